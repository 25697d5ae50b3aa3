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
/// Waits longer than `spin` never poll (a lane with light traffic sleeps
/// as before), and a poll that found nothing counts as a long wait: the
/// lane then sleeps until one sleep is shorter than the window, so
/// arrivals spaced just past it cannot keep a lane polling through all
/// its idle time. Needs tokio 1.53 or later: a park hook that wakes the
/// `block_on` future stops the park (tokio#7835, 1.50), and the driver
/// is still polled then (tokio#8222, 1.53).
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
            let mut last_round = false;
            loop {
                // Other threads on this core (a sidecar, a load
                // generator) run first: yielding only after rounds that
                // found nothing measured a worse p99 beside wrk.
                std::thread::yield_now();
                // The runtime polls its sockets without blocking, runs
                // what is ready, and polls this future again.
                tokio::task::yield_now().await;
                let requests = REQUESTS.get();
                if requests != seen {
                    (seen, last_work, last_round) = (requests, Instant::now(), false);
                } else if last_round {
                    break;
                } else if last_work.elapsed() >= self.spin {
                    // The tasks the last poll readied run before this
                    // future's next turn: one more round counts them.
                    last_round = true;
                }
            }
            SPINNING.set(false);
            // The wait that follows counts from the last request seen, so
            // it is long: the lane sleeps, and polls again only after a
            // sleep shorter than the window.
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
            // Its spinner never waits to be asked (and Lanes::start
            // installs no hooks), so nothing can ask it.
            let (waker, _) = counting_waker();
            let mut spinner = std::pin::pin!(idle.spinner());
            let mut cx = std::task::Context::from_waker(&waker);
            ASKED.set(true);
            assert!(spinner.as_mut().poll(&mut cx).is_pending());
            assert!(SPINNER.take().is_none(), "no waker left to be asked");
            assert!(!SPINNING.get());
        });
    }

    /// A polling lane serves what arrives at once, counts its requests,
    /// and goes back to sleep once the window passes without one.
    #[test]
    fn a_polling_lane_serves_and_then_sleeps() {
        let spin = Duration::from_millis(300);
        let lanes = Lanes::start(1, Idle { spin }).unwrap();
        let lane = lanes.pick().clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A request on the lane; says whether the lane was polling.
        let ask = |lane: &tokio::runtime::Handle| {
            rt.block_on(lane.spawn(async {
                note_request();
                SPINNING.get()
            }))
            .unwrap()
        };
        // The lane's first wait (since it started) is short, so after
        // a request it polls; requests keep it polling.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut polled = 0;
        while polled < 3 && Instant::now() < deadline {
            polled += usize::from(ask(&lane));
        }
        assert_eq!(polled, 3, "requests were served while the lane polled");
        // With no request for longer than the window, it sleeps again.
        let quiet = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        while quiet.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(spin);
            let tx = tx.clone();
            lane.spawn(async move { tx.send(SPINNING.get()).unwrap() });
            if !rx.recv().unwrap() {
                return;
            }
        }
        panic!("still polling 10 s after the last request");
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
