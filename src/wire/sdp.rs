//! SDP: views and rewriting of connection, media ports and RTCP attributes.
