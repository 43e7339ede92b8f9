//! SDP view: never panics; what it reports is consistent with the body.
#![no_main]
use intertrunk::wire::sdp::{Sdp, MAX_MEDIA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = Sdp::parse(data) {
        assert!(sdp.media_count() <= MAX_MEDIA);
        assert_eq!(sdp.media().count(), sdp.media_count());
        for m in sdp.media() {
            assert!(!m.kind.is_empty() && !m.proto.is_empty());
            if m.connection.is_some() && sdp.session_connection().is_none() {
                // Then it came from a media-level c= line.
                assert!(data.windows(2).any(|w| w == b"c="));
            }
        }
    }
});
