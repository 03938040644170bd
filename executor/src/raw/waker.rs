//! `Waker`s are task pointers: clone and drop adjust the task's reference count, wake
//! pushes it on its executor's run queue. No allocation, no lock, any context.
//!
//! The vtable doubles as a type tag: a waker whose vtable is [`VTABLE`] points to a
//! torito task header, which is how timers find their task and executor.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::ptr::{self, NonNull};
use core::task::{RawWaker, RawWakerVTable, Waker};

use super::executor::{Executor, Header};
use super::task::{self, Free};

/// A `static`, not a `const`: its address is the tag compared in [`task_of`], and only
/// a static is guaranteed to have a single address.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// # Safety
///
/// `data` comes from a waker made with [`VTABLE`], which owns a task reference.
unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned keeps the task alive; `data` is its header.
    unsafe { task::retain(header_ptr(data)) };
    RawWaker::new(data, &VTABLE)
}

/// # Safety
///
/// As [`clone`]; consumes the waker's reference.
unsafe fn wake(data: *const ()) {
    // SAFETY: the waker's reference is handed over.
    unsafe { task::wake(header_ptr(data), true) }
}

/// # Safety
///
/// As [`clone`].
unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the waker keeps its reference during the call.
    unsafe { task::wake(header_ptr(data), false) }
}

/// # Safety
///
/// As [`clone`]; consumes the waker's reference.
unsafe fn drop_waker(data: *const ()) {
    // SAFETY: the waker's reference is dropped. Deferred: a waker may be dropped in
    // an interrupt handler, which must not call the allocator.
    unsafe { task::release(header_ptr(data), Free::Deferred) }
}

fn header_ptr(data: *const ()) -> NonNull<Header> {
    match NonNull::new(data.cast_mut().cast::<Header>()) {
        Some(task) => task,
        None => unreachable!("torito wakers are made from task pointers"),
    }
}

/// A `Waker` that borrows a reference the caller already holds, so polling a task
/// costs no reference-count traffic. Cloning it makes a real, counted waker.
pub(crate) struct WakerRef<'a> {
    waker: ManuallyDrop<Waker>,
    _task: PhantomData<&'a Header>,
}

impl Deref for WakerRef<'_> {
    type Target = Waker;
    fn deref(&self) -> &Waker {
        &self.waker
    }
}

/// # Safety
///
/// `task` is live and the caller holds a reference to it for all of `'a`.
pub(crate) unsafe fn waker_ref<'a>(task: NonNull<Header>) -> WakerRef<'a> {
    let raw = RawWaker::new(task.as_ptr().cast_const().cast(), &VTABLE);
    // SAFETY: `VTABLE`'s contract holds: `task` stays live for `'a` (caller), and the
    // `ManuallyDrop` never runs `drop_waker`, so the borrowed reference is not released.
    let waker = unsafe { Waker::from_raw(raw) };
    WakerRef {
        waker: ManuallyDrop::new(waker),
        _task: PhantomData,
    }
}

/// The task behind `waker`, if it is a torito waker. The task stays live as long as
/// `waker` does.
pub(crate) fn task_of(waker: &Waker) -> Option<NonNull<Header>> {
    if ptr::eq(waker.vtable(), &VTABLE) {
        Some(header_ptr(waker.data()))
    } else {
        None
    }
}

/// The executor that owns the task behind `waker`.
pub(crate) fn executor_of(waker: &Waker) -> Option<&'static Executor> {
    // SAFETY: a torito waker owns a reference, so the header is live while we read
    // its (immutable) executor field.
    task_of(waker).map(|task| unsafe { task.as_ref() }.executor)
}
