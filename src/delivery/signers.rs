//! Signing threads: each attempt's request is built and signed here, off the
//! runtime's I/O threads, so a burst of Ed25519 signatures (tens of
//! microseconds each) never delays reading a response, the replication stream
//! or a database reply.
//!
//! One lane per CPU: an OS thread with its own [`SignatureMemo`]. The attempt
//! task hands its work to a lane and awaits the answer. Work for one event
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
    /// one event) and return its result. Panics when `work` panicked, as it
    /// would have run inline.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        event: uuid::Uuid,
        work: impl FnOnce(&mut SignatureMemo) -> T + Send + 'static,
    ) -> T {
        let (reply, answer) = oneshot::channel();
        let lane = &self.lanes[(event.as_u128() % self.lanes.len() as u128) as usize];
        let job: Work = Box::new(move |memo| {
            let _ = reply.send(work(memo));
        });
        if lane.send(job).is_err() {
            panic!("signing lane ended: its thread is gone");
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => panic!("preparing a request panicked on a signing thread"),
        }
    }
}

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
                    .await,
            );
        }
        assert!(names[0].as_deref().unwrap().starts_with("walhook-sign-"));
        assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
    }

    #[tokio::test]
    async fn a_panic_reaches_the_caller_and_the_lane_goes_on() {
        let signers = std::sync::Arc::new(Signers::with_lanes(1).unwrap());
        let event = uuid::Uuid::new_v4();
        let panicking = signers.clone();
        let failed = tokio::spawn(async move {
            panicking
                .run(event, |_| -> u8 { panic!("bad request") })
                .await
        })
        .await;
        assert!(failed.unwrap_err().is_panic());
        assert_eq!(signers.run(event, |_| 7).await, 7);
    }
}
