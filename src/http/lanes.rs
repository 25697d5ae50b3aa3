//! Connection threads ("lanes"), for `server.threading = "per_core"`:
//! each runs a single-threaded runtime and serves the connections handed
//! to it, as nginx's workers do.

use std::cell::Cell;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Threads each running a single-threaded runtime, serving the
/// connections handed to them in turn: a connection's reads, writes,
/// timers and requests all stay on its thread, as with nginx's workers.
/// The threads end when this is dropped (their runtimes with them).
pub struct Lanes {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
    /// Dropped to stop the threads.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Lanes {
    /// Starts `n` threads (at least one).
    pub fn start(n: usize, idle: Idle) -> std::io::Result<Self> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.enable_all().thread_name(format!("fg-conn-{i}-blk"));
            if !idle.spin.is_zero() {
                builder
                    .on_thread_park(move || idle.before_sleep())
                    .on_thread_unpark(move || idle.after_sleep());
            }
            let runtime = builder.build()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            handles.push(runtime.handle().clone());
            stops.push(stop);
            std::thread::Builder::new()
                // (Linux keeps 15 bytes of a thread's name.)
                .name(format!("fg-conn-{i}"))
                .spawn(move || {
                    // Until the sender is dropped; the runtime, and the
                    // tasks left on it, end with the thread.
                    runtime.block_on(async move {
                        tokio::select! {
                            biased;
                            _ = stopped => {}
                            _ = idle.spinner() => {}
                        }
                    });
                })?;
        }
        Ok(Lanes {
            handles,
            next: std::sync::atomic::AtomicUsize::new(0),
            _stop: stops,
        })
    }

    pub(super) fn pick(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.handles[i % self.handles.len()]
    }
}

/// How a lane waits when it has nothing to run (`server.idle_spin_us`),
/// as Go's scheduler polls the network before it parks a thread.
///
/// Sleeping in `epoll_wait` and being woken costs a lane a context switch
/// each way, and its core an idle exit. Under load, a lane serving tens
/// of connections would otherwise sleep and be woken between nearly
/// every pair of requests while the cores sit idle. So when a lane's last
/// wait for work was shorter than `spin`, it polls instead of sleeping:
/// it yields its core to any other thread that wants it, checks its
/// sockets without blocking, serves what is ready at once, and goes on
/// until `spin` has passed without a request. Only then does it sleep.
///
/// Light traffic (waits longer than `spin`) never spins, and a spin that
/// found nothing counts as a long wait, so arrivals spaced just past the
/// window cannot keep a lane spinning through all its idle time.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Zero: always sleep at once.
    pub spin: Duration,
}

thread_local! {
    /// Requests this thread has begun ([`note_request`]).
    static REQUESTS: Cell<u64> = const { Cell::new(0) };
    /// Whether the lane polls, rather than sleeps, when next out of work.
    static SPIN_NEXT: Cell<bool> = const { Cell::new(false) };
    /// The spinner's waker while it waits to be asked; `ASKED` asks it.
    static SPINNER: Cell<Option<Waker>> = const { Cell::new(None) };
    static ASKED: Cell<bool> = const { Cell::new(false) };
    /// Whether the spinner is polling now.
    static SPINNING: Cell<bool> = const { Cell::new(false) };
    /// Since when the lane has had no work: set when it goes to sleep,
    /// or back-dated to the last request when a spin ends empty.
    static IDLE_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Counts a request begun on this thread: what tells a spinning lane it
/// found work. A thread-local add; any thread may call it.
pub fn note_request() {
    REQUESTS.set(REQUESTS.get().wrapping_add(1));
}

impl Idle {
    /// Run by the lane's runtime when it runs out of tasks, before it
    /// sleeps: asks the spinner to poll instead when the last wait was
    /// short (the runtime then checks its sockets and does not sleep).
    fn before_sleep(self) {
        if SPIN_NEXT.replace(false)
            && let Some(spinner) = SPINNER.take()
        {
            ASKED.set(true);
            spinner.wake();
            return;
        }
        if IDLE_SINCE.get().is_none() {
            IDLE_SINCE.set(Some(Instant::now()));
        }
    }

    /// Run by the lane's runtime when it wakes (or, right after asking
    /// the spinner, when it did not sleep at all).
    fn after_sleep(self) {
        if let Some(since) = IDLE_SINCE.take() {
            SPIN_NEXT.set(since.elapsed() < self.spin);
        }
    }

    /// The lane's poller: waits to be asked by [`Idle::before_sleep`],
    /// then keeps the runtime polling (each `yield_now` makes it check
    /// its sockets without blocking and run what is ready) until `spin`
    /// has passed since the last request. Never ends.
    async fn spinner(self) {
        if self.spin.is_zero() {
            return std::future::pending().await;
        }
        loop {
            std::future::poll_fn(|cx| {
                if ASKED.replace(false) {
                    Poll::Ready(())
                } else {
                    SPINNER.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            SPINNING.set(true);
            let mut seen = REQUESTS.get();
            let mut last_work = Instant::now();
            loop {
                // Other threads on this core (a sidecar, a load
                // generator) run first, then the runtime polls.
                std::thread::yield_now();
                tokio::task::yield_now().await;
                let now = Instant::now();
                let requests = REQUESTS.get();
                if requests != seen {
                    (seen, last_work) = (requests, now);
                } else if now.duration_since(last_work) >= self.spin {
                    break;
                }
            }
            SPINNING.set(false);
            // The wait that follows started at the last request, so it
            // counts as long: the next one sleeps at once.
            IDLE_SINCE.set(Some(last_work));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own: the lane state is per thread.
    fn on_a_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn a_lane_polls_only_after_a_short_wait() {
        on_a_thread(|| {
            // Wide: a "short" wait below must stay under the window
            // however loaded the machine running the test is.
            let idle = Idle {
                spin: Duration::from_millis(200),
            };
            let (waker, asked) = counting_waker();
            SPINNER.set(Some(waker.clone()));
            // A new lane has not waited yet: it sleeps.
            idle.before_sleep();
            assert!(!ASKED.get());
            // A long wait: the next one sleeps too.
            std::thread::sleep(Duration::from_millis(250));
            idle.after_sleep();
            assert!(!SPIN_NEXT.get());
            // A short one: the next wait asks the spinner instead.
            idle.before_sleep();
            idle.after_sleep();
            assert!(SPIN_NEXT.get());
            idle.before_sleep();
            assert!(ASKED.get(), "the spinner is asked");
            assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
            // The runtime's zero-length park right after asking is not a
            // wait: it decides nothing.
            idle.after_sleep();
            assert!(!SPIN_NEXT.get());
            // A spin that ended empty back-dates the wait to its last
            // request: even a short sleep after it counts as long.
            ASKED.set(false);
            SPINNER.set(Some(waker));
            IDLE_SINCE.set(Some(Instant::now() - Duration::from_millis(300)));
            idle.before_sleep();
            idle.after_sleep();
            assert!(!SPIN_NEXT.get());
            idle.before_sleep();
            assert!(!ASKED.get(), "after an empty spin the lane sleeps");
        });
    }

    #[test]
    fn a_zero_window_never_polls() {
        on_a_thread(|| {
            let idle = Idle {
                spin: Duration::ZERO,
            };
            SPINNER.set(Some(counting_waker().0));
            IDLE_SINCE.set(Some(Instant::now()));
            idle.after_sleep();
            assert!(!SPIN_NEXT.get(), "no wait is shorter than zero");
            idle.before_sleep();
            assert!(!ASKED.get());
        });
    }

    /// A spinning lane serves what arrives at once, not when the window
    /// ends; and it goes back to sleep once the window passes empty.
    #[test]
    fn a_spinning_lane_serves_at_once_and_then_sleeps() {
        let spin = Duration::from_millis(800);
        let lanes = Lanes::start(1, Idle { spin }).unwrap();
        let lane = lanes.pick().clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // What a task on the lane sees of its thread's state.
        let ask = |lane: &tokio::runtime::Handle| {
            rt.block_on(lane.spawn(async {
                note_request();
                SPINNING.get()
            }))
            .unwrap()
        };
        // Two requests in quick succession: the second wait is short, so
        // the lane then polls for `spin` after the last request.
        ask(&lane);
        ask(&lane);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut served_while_spinning = None;
        while Instant::now() < deadline {
            let sent = Instant::now();
            if ask(&lane) {
                served_while_spinning = Some(sent.elapsed());
                break;
            }
        }
        let took = served_while_spinning.expect("the lane never polled");
        assert!(
            took < spin / 2,
            "served in {took:?}, not at the window's end"
        );
        // With no request for longer than the window, it sleeps again.
        std::thread::sleep(spin * 2);
        let (tx, rx) = std::sync::mpsc::channel();
        lane.spawn(async move { tx.send(SPINNING.get()).unwrap() });
        assert!(!rx.recv().unwrap(), "still spinning after an empty window");
    }

    fn counting_waker() -> (Waker, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Waker::from(std::sync::Arc::new(Count(n.clone()))), n)
    }
}
