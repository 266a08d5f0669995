//! Signing threads: each attempt's request is built and signed here, off the
//! runtime's I/O threads, so a burst of Ed25519 signatures (tens of
//! microseconds each) never delays reading a response, the replication stream
//! or a database reply.
//!
//! One lane per CPU: an OS thread with its own [`SignatureMemo`]. The attempt
//! task hands its work to a lane and awaits the answer; work that panics
//! answers [`Panicked`] and the lane goes on. Work for one event
//! always goes to the same lane, so the deliveries of an event fanned out to
//! several subscriptions find its signatures in that lane's memo.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::signing::SignatureMemo;

type Work = Box<dyn FnOnce(&mut SignatureMemo) + Send>;

/// The signing lanes; the threads end when this is dropped.
pub(crate) struct Signers {
    lanes: Vec<mpsc::Sender<Work>>,
}

impl Signers {
    /// One lane per CPU the process may use.
    pub(crate) fn start() -> std::io::Result<Signers> {
        let lanes = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_lanes(lanes)
    }

    fn with_lanes(lanes: usize) -> std::io::Result<Signers> {
        let lanes = (0..lanes.max(1))
            .map(|n| {
                let (sender, work) = mpsc::channel::<Work>();
                std::thread::Builder::new()
                    .name(format!("walhook-sign-{n}"))
                    .spawn(move || {
                        let mut memo = SignatureMemo::default();
                        while let Ok(job) = work.recv() {
                            // A panic drops the job's reply, which its caller
                            // sees; the lane goes on with the next job.
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memo)));
                        }
                    })?;
                Ok(sender)
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Signers { lanes })
    }

    /// Run `work` on the lane of `event` (the same lane for every delivery of
    /// one event) and return its result, or [`Panicked`] when it panicked.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        event: uuid::Uuid,
        work: impl FnOnce(&mut SignatureMemo) -> T + Send + 'static,
    ) -> Result<T, Panicked> {
        let (reply, answer) = oneshot::channel();
        let lane = &self.lanes[(event.as_u128() % self.lanes.len() as u128) as usize];
        let job: Work = Box::new(move |memo| {
            let _ = reply.send(work(memo));
        });
        // a lane's thread only ends when its sender is dropped, so a failed
        // send cannot happen while `self` lives; it is reported all the same
        lane.send(job).map_err(|_| Panicked)?;
        answer.await.map_err(|_| Panicked)
    }
}

/// The work panicked on its signing thread (a bug; the panic message is in
/// the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "building or signing the request panicked (a bug in walhook: please report it with the log)"
)]
pub(crate) struct Panicked;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_off_the_runtime_and_one_event_keeps_its_lane() {
        let signers = Signers::with_lanes(3).unwrap();
        let event = uuid::Uuid::new_v4();
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(
                signers
                    .run(event, |_| std::thread::current().name().map(str::to_owned))
                    .await
                    .unwrap(),
            );
        }
        assert!(names[0].as_deref().unwrap().starts_with("walhook-sign-"));
        assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
    }

    #[tokio::test]
    async fn a_panic_reaches_the_caller_and_the_lane_goes_on() {
        let signers = Signers::with_lanes(1).unwrap();
        let event = uuid::Uuid::new_v4();
        let failed = signers
            .run(event, |_| -> u8 { panic!("bad request") })
            .await;
        assert_eq!(failed, Err(Panicked));
        assert_eq!(signers.run(event, |_| 7).await, Ok(7));
    }
}
