//! The storage backend under redb: whatever the caller gives, with every growth of the
//! file made durable before redb writes anything that depends on it.
//!
//! redb grows its file (`set_len`) in the middle of a write transaction and later writes
//! a header naming the new length, then syncs once. A crash before that sync may keep the
//! header (data written in place) and lose the length change (file metadata, which a
//! journaling file system commits separately); redb then refuses the file, because it is
//! shorter than its header says. Syncing right after each growth closes that window. A
//! file only grows geometrically, so this costs a handful of extra syncs over a file's
//! life. Shrinks need nothing: redb shrinks only after a commit is synced, and a file
//! longer than its header is one redb repairs.

use std::io;

use redb::StorageBackend;

/// Wraps a backend so that growing the file is durable before `set_len` returns.
#[derive(Debug)]
pub(crate) struct SyncedGrowth<B>(pub(crate) B);

impl<B: StorageBackend> StorageBackend for SyncedGrowth<B> {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        self.0.read(offset, len)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let grows = len > self.0.len()?;
        self.0.set_len(len)?;
        if grows {
            self.0.sync_data(false)?;
        }
        Ok(())
    }

    fn sync_data(&self, eventual: bool) -> Result<(), io::Error> {
        self.0.sync_data(eventual)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write(offset, data)
    }
}
