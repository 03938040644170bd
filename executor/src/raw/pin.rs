//! The crate's one structural pin projection, so `timer.rs` needs no `unsafe`.

use core::pin::Pin;

use crate::timer::{Sleep, Timeout};

/// Splits a pinned `Timeout` into its pinned inner future and its (`Unpin`) sleep.
pub(crate) fn project_timeout<F>(timeout: Pin<&mut Timeout<F>>) -> (Pin<&mut F>, &mut Sleep) {
    // SAFETY: `future` is structurally pinned: `Timeout` has no `Drop` impl, no manual
    // `Unpin` impl, and never moves `future` out of a pinned `Timeout` (the only access
    // is this function). `sleep` is `Unpin`, so handing it out unpinned is fine.
    let timeout = unsafe { timeout.get_unchecked_mut() };
    // SAFETY: see above; `timeout` itself is pinned, so its `future` field is too.
    let future = unsafe { Pin::new_unchecked(&mut timeout.future) };
    (future, &mut timeout.sleep)
}
