//! The answers to a client batch, gathered in one place.
//!
//! A batch of N requests used to wait on N oneshot channels: N allocations, and N polls
//! of the batch's task as its answers came in. Now the core puts each answer in its slot
//! of the batch's [`BatchReplies`], and the task is woken once, when the last is in.
//! A slot the core drops unanswered (it stopped) says so, as a dropped oneshot did.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::core_loop::ClientResult;

/// What became of one request of a batch.
#[derive(Debug)]
pub enum Outcome {
    /// The core answered it.
    Answered(ClientResult),
    /// The core dropped it unanswered (it stopped): it may have been applied.
    Dropped,
}

/// The answers of one batch, filled in by the core through [`BatchSlot`]s.
#[derive(Debug)]
pub struct BatchReplies {
    collected: Mutex<Collected>,
    all_in: Notify,
}

#[derive(Debug)]
struct Collected {
    outcomes: Vec<Option<Outcome>>,
    missing: usize,
}

impl BatchReplies {
    /// Replies for a batch of `n` requests, and the slot for each, in order.
    pub fn new(n: usize) -> (Arc<Self>, Vec<BatchSlot>) {
        let batch = Arc::new(BatchReplies {
            collected: Mutex::new(Collected {
                outcomes: std::iter::repeat_with(|| None).take(n).collect(),
                missing: n,
            }),
            all_in: Notify::new(),
        });
        let slots = (0..n)
            .map(|index| BatchSlot {
                batch: Arc::clone(&batch),
                index,
                filled: false,
            })
            .collect();
        (batch, slots)
    }

    /// Returns once every slot is filled (at once for an empty batch). For one waiter.
    pub async fn all_in(&self) {
        if self.lock().missing == 0 {
            return;
        }
        // A permit stored by a fill after the check above ends this wait at once.
        self.all_in.notified().await;
    }

    /// What is in so far, in order (`None`: not answered yet), leaving nothing behind.
    pub fn take(&self) -> Vec<Option<Outcome>> {
        std::mem::take(&mut self.lock().outcomes)
    }

    fn lock(&self) -> MutexGuard<'_, Collected> {
        // The lock guards plain data that no panic leaves half-written.
        self.collected.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the core puts one request's answer. Dropped unfilled, it records
/// [`Outcome::Dropped`].
#[derive(Debug)]
pub struct BatchSlot {
    batch: Arc<BatchReplies>,
    index: usize,
    filled: bool,
}

impl BatchSlot {
    /// Puts the request's answer in its place.
    pub fn send(mut self, result: ClientResult) {
        self.fill(Outcome::Answered(result));
    }

    fn fill(&mut self, outcome: Outcome) {
        self.filled = true;
        let mut collected = self.batch.lock();
        // Taken already (the batch gave up waiting): nobody reads it.
        let Some(place) = collected.outcomes.get_mut(self.index) else {
            return;
        };
        if place.is_none() {
            *place = Some(outcome);
            collected.missing -= 1;
            if collected.missing == 0 {
                self.batch.all_in.notify_one();
            }
        }
    }
}

impl Drop for BatchSlot {
    fn drop(&mut self) {
        if !self.filled {
            self.fill(Outcome::Dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::ClientReply;

    #[tokio::test(flavor = "current_thread")]
    async fn the_batch_wakes_once_every_slot_is_filled_in_any_order() {
        let (batch, slots) = BatchReplies::new(3);
        let Ok([a, b, c]) = <[BatchSlot; 3]>::try_from(slots) else {
            panic!("three slots for three requests");
        };
        let waiting = tokio::spawn({
            let batch = Arc::clone(&batch);
            async move { batch.all_in().await }
        });
        c.send(Ok(ClientReply::Deleted));
        drop(a); // the core stopped before answering it
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one answer is still missing");
        b.send(Ok(ClientReply::Applied));
        waiting.await.expect("the waiting task");
        let got = batch.take();
        assert!(matches!(got[0], Some(Outcome::Dropped)));
        assert!(matches!(
            got[1],
            Some(Outcome::Answered(Ok(ClientReply::Applied)))
        ));
        assert!(matches!(
            got[2],
            Some(Outcome::Answered(Ok(ClientReply::Deleted)))
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_after_the_batch_gave_up_is_dropped_quietly() {
        let (batch, slots) = BatchReplies::new(1);
        assert!(batch.take().iter().all(Option::is_none));
        for s in slots {
            s.send(Ok(ClientReply::Applied));
        }
        let (empty, none) = BatchReplies::new(0);
        assert!(none.is_empty());
        empty.all_in().await;
    }
}
