//! Resource bounds that hold whatever clients send: a cap on open connections (taken
//! before the TLS handshake, so a flood of connections costs nothing but a refused
//! socket) and a budget of request-body bytes held in memory at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// An acceptor that admits at most `max` connections at once: the others are closed
/// right after `accept`, before any TLS work.
#[derive(Clone)]
pub struct ConnectionCap<A> {
    inner: A,
    slots: Arc<Semaphore>,
    metrics: Metrics,
}

impl<A> ConnectionCap<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, max: usize, metrics: Metrics) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max.max(1))),
            metrics,
        }
    }
}

impl<A, I, S> Accept<I, S> for ConnectionCap<A>
where
    A: Accept<I, Held<S>> + Clone + Send + 'static,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(A::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics.record_connection_rejected();
            return Box::pin(std::future::ready(Err(io::Error::other(
                "connection limit reached",
            ))));
        };
        let held = Held {
            inner: service,
            _slot: Arc::new(slot),
        };
        Box::pin(self.inner.accept(stream, held))
    }
}

/// A connection's service, holding the connection's slot until hyper drops it when the
/// connection closes.
#[derive(Clone)]
pub struct Held<S> {
    inner: S,
    _slot: Arc<OwnedSemaphorePermit>,
}

impl<S, R> tower::Service<R> for Held<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.inner.call(req)
    }
}

/// Request-body bytes held at once across all connections. Bytes are taken as they
/// arrive, so a stalled upload holds only what it actually sent, and released when the
/// request has been answered.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    bytes: Arc<Semaphore>,
}

impl ByteBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// Takes `n` more bytes into `held`; false when the budget is spent.
    pub fn take(&self, n: usize, held: &mut Option<OwnedSemaphorePermit>) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match self.bytes.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                match held {
                    Some(h) => h.merge(p),
                    None => *held = Some(p),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes currently free, for tests and metrics.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_held_until_released() {
        let b = ByteBudget::new(100);
        let mut a = None;
        assert!(b.take(60, &mut a));
        assert!(b.take(30, &mut a));
        let mut c = None;
        assert!(!b.take(20, &mut c), "only 10 bytes left");
        assert_eq!(b.available(), 10);
        drop(a);
        assert_eq!(b.available(), 100);
        assert!(b.take(20, &mut c));
    }
}
