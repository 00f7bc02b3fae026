//! A one-value channel whose receiver is a future: the sync runs on a plain thread and the
//! exported `async fn` awaits its result, with no async runtime inside the library. Dropping the
//! receiver before the value arrives (the app cancelled the coroutine or task) cancels the sync.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

pub(crate) struct Sender<T>(Arc<Mutex<Slot<T>>>);

pub(crate) struct Receiver<T> {
    slot: Arc<Mutex<Slot<T>>>,
    done: bool,
    cancel: Arc<AtomicBool>,
}

pub(crate) fn channel<T>(cancel: Arc<AtomicBool>) -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (
        Sender(slot.clone()),
        Receiver {
            slot,
            done: false,
            cancel,
        },
    )
}

impl<T> Sender<T> {
    pub(crate) fn send(self, value: T) {
        let waker = {
            let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let taken = {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            match slot.value.take() {
                Some(v) => Some(v),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    None
                }
            }
        };
        match taken {
            Some(v) => {
                self.done = true;
                Poll::Ready(v)
            }
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if !self.done {
            self.cancel.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn delivers_and_wakes() {
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = channel::<u32>(cancel.clone());
        let woken = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut rx).poll(&mut cx).is_pending());
        std::thread::spawn(move || tx.send(7)).join().unwrap();
        assert!(woken.0.load(Ordering::SeqCst));
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Ready(7));
        drop(rx);
        assert!(!cancel.load(Ordering::SeqCst));
    }

    #[test]
    fn dropping_an_unfinished_receiver_cancels() {
        let cancel = Arc::new(AtomicBool::new(false));
        let (_tx, rx) = channel::<u32>(cancel.clone());
        drop(rx);
        assert!(cancel.load(Ordering::SeqCst));
    }
}
