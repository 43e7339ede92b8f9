//! SIGTERM / SIGINT for the control thread, through a signalfd: block the signals before the
//! workers are spawned (they inherit the mask), then wait on the fd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Termination signals turned into readable events.
#[derive(Debug)]
pub struct TerminationSignals {
    fd: OwnedFd,
}

fn term_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

impl TerminationSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread (call it before spawning any thread) and
    /// opens a signalfd for them.
    pub fn install() -> io::Result<TerminationSignals> {
        let set = term_set();
        // SAFETY: set is initialised; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: -1 asks for a new fd; set is initialised.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(TerminationSignals {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Waits up to `timeout` for SIGTERM or SIGINT; returns the signal number.
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<i32>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one pollfd we own.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(None);
        }
        // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            )
        };
        if n != std::mem::size_of::<libc::signalfd_siginfo>() as isize {
            return Ok(None);
        }
        Ok(i32::try_from(info.ssi_signo).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_signal_is_read_not_delivered() {
        // Runs on its own thread so the mask stays local to it.
        std::thread::spawn(|| {
            let s = TerminationSignals::install().unwrap();
            assert_eq!(s.wait(Duration::from_millis(1)).unwrap(), None);
            // SAFETY (test): signals this thread only; SIGTERM is blocked here.
            unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGTERM) };
            assert_eq!(s.wait(Duration::from_secs(5)).unwrap(), Some(libc::SIGTERM));
        })
        .join()
        .unwrap();
    }
}
