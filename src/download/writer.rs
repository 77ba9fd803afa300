//! The write path: body chunks batched into positional writes on the blocking pool.
//!
//! Chunks are collected in memory up to [`BATCH_BYTES`] and handed to one blocking
//! task per batch, while the next batch fills (at most one write in flight per
//! download or connection). A body that fits in one batch goes to the committer
//! thread instead ([`super::commit`]), which creates, writes, flushes and renames
//! it together with the other small files waiting.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::commit::{self, complete, discard, Small};
use crate::checksum::{Checksum, Mismatch, Verifier};
use crate::fs::{create_nofollow, reserve_space, write_at};
use crate::options::FileAllocation;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// Bytes collected before a write is issued, by a download or by each
/// connection of a split one (up to 16 connections each hold one batch filling
/// and one being written).
pub const BATCH_BYTES: usize = 128 * 1024;

/// Standard output (`-o -`) for a body that may be fetched in several tries:
/// bytes an earlier try already wrote are dropped, never written twice.
pub struct StdoutSink {
    out: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    /// Bytes of this response still to drop.
    skip: u64,
}

impl StdoutSink {
    /// A sink to stdout that drops the first `skip` bytes it is given.
    pub fn new(skip: u64) -> Self {
        StdoutSink {
            out: Box::pin(tokio::io::stdout()),
            skip,
        }
    }

    /// The same into an existing file that is not a regular one (`-o
    /// /dev/null`, a FIFO): opened for writing as it is.
    pub async fn device(path: &Path, skip: u64) -> io::Result<Self> {
        let file = tokio::fs::OpenOptions::new().write(true).open(path).await?;
        Ok(StdoutSink {
            out: Box::pin(file),
            skip,
        })
    }

    /// Write one chunk, minus what is still to be skipped.
    pub async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        let drop = self.skip.min(chunk.len() as u64) as usize;
        self.skip -= drop as u64;
        self.out.write_all(&chunk[drop..]).await
    }

    /// Flush stdout.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.out.flush().await
    }
}

/// What a write job takes and hands back: the file (opened by the first job)
/// and the verifier that hashes the bytes in file order.
struct Carry {
    file: Option<File>,
    verify: Option<Verifier>,
}

/// A blocking write in flight.
type WriteJob = JoinHandle<io::Result<Carry>>;

/// Writes one `.part` file at increasing offsets, hashing what it writes when
/// a checksum is to be verified.
pub struct PartWriter {
    part: PathBuf,
    /// The file and verifier, when no write is in flight.
    carry: Option<Carry>,
    /// Truncate on open (a fresh start) rather than keep existing bytes.
    truncate: bool,
    /// Bytes `[0, n)` already on disk that the verifier must read back first.
    unhashed: u64,
    /// The write in flight, if any.
    inflight: Option<WriteJob>,
    /// Chunks not yet handed to a write.
    buf: Vec<Bytes>,
    buf_len: usize,
    /// Offset where the next batch goes.
    next_offset: u64,
    /// Offset up to which bytes were flushed to disk.
    synced: u64,
    /// A write failed: the file may miss bytes before `next_offset`, so nothing
    /// more is written or reported as durable.
    failed: bool,
    /// Space to reserve when the file is opened: the mode and the file's size.
    reserve: Option<(FileAllocation, u64)>,
}

impl PartWriter {
    /// A writer for `part` starting at `offset`; `offset == 0` starts the file afresh.
    /// The file is opened lazily, with the first write. With a verifier, the
    /// bytes before `offset` are read back and hashed first.
    pub fn new(part: PathBuf, offset: u64, verify: Option<Verifier>) -> Self {
        PartWriter {
            part,
            unhashed: if verify.is_some() { offset } else { 0 },
            carry: Some(Carry { file: None, verify }),
            truncate: offset == 0,
            inflight: None,
            buf: Vec::new(),
            buf_len: 0,
            next_offset: offset,
            synced: offset,
            failed: false,
            reserve: None,
        }
    }

    /// Reserve space for the whole file (`size` bytes) when it is opened.
    pub fn reserving(mut self, mode: FileAllocation, size: u64) -> Self {
        self.reserve = Some((mode, size));
        self
    }

    /// The `.part` path.
    pub fn path(&self) -> &Path {
        &self.part
    }

    /// Take one chunk; a write is issued once a batch is full.
    pub async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.buf_len += chunk.len();
        self.buf.push(chunk);
        if self.buf_len >= BATCH_BYTES {
            self.issue_batch().await?;
        }
        Ok(())
    }

    /// The file and verifier back from the write in flight. After a failed
    /// write every call fails: reopening would put later bytes after a gap.
    async fn take_carry(&mut self) -> io::Result<Carry> {
        if self.failed {
            return Err(io::Error::other(format!(
                "an earlier write to {} failed",
                self.part.display()
            )));
        }
        let result = match self.inflight.take() {
            Some(job) => job.await.map_err(io::Error::other).and_then(|r| r),
            None => Ok(self
                .carry
                .take()
                .expect("carry is here when no write is in flight")),
        };
        self.failed = result.is_err();
        result
    }

    fn batch_job(&mut self, carry: Carry) -> impl FnOnce() -> io::Result<Carry> + Send {
        let bufs = std::mem::take(&mut self.buf);
        let offset = self.next_offset;
        self.next_offset += self.buf_len as u64;
        self.buf_len = 0;
        let part = self.part.clone();
        // Only the first open of a fresh download truncates.
        let truncate = std::mem::replace(&mut self.truncate, false);
        let unhashed = std::mem::take(&mut self.unhashed);
        let reserve = self.reserve.take();
        move || {
            let Carry { file, mut verify } = carry;
            let file = match file {
                Some(f) => f,
                None => {
                    let f = open_part(&part, truncate, offset)?;
                    if let Some((mode, size)) = reserve {
                        reserve_space(&f, mode, offset, size)?;
                    }
                    f
                }
            };
            if let Some(v) = verify.as_mut() {
                if unhashed > 0 {
                    v.update_from(&file, 0, unhashed)?;
                }
                for b in &bufs {
                    v.update(b);
                }
            }
            write_at(&file, &bufs, offset)?;
            Ok(Carry {
                file: Some(file),
                verify,
            })
        }
    }

    async fn issue_batch(&mut self) -> io::Result<()> {
        let carry = self.take_carry().await?;
        let job = self.batch_job(carry);
        self.inflight = Some(tokio::task::spawn_blocking(job));
        Ok(())
    }

    /// Write everything collected and flush it to disk. Returns the offset up to
    /// which bytes are durable, to record in the state file. With `trim`, the
    /// file is cut to that length (space reserved for the rest is given back).
    pub async fn sync(&mut self, trim: bool) -> io::Result<u64> {
        let carry = self.take_carry().await?;
        let job = self.batch_job(carry);
        let end = self.next_offset;
        let result = tokio::task::spawn_blocking(move || {
            let carry = job()?;
            if let Some(f) = &carry.file {
                if trim {
                    f.set_len(end)?;
                }
                f.sync_data()?;
            }
            Ok::<_, io::Error>(carry)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        self.failed = result.is_err();
        self.carry = Some(result?);
        self.synced = self.next_offset;
        Ok(self.synced)
    }

    /// Whether bytes were pushed since the last [`PartWriter::sync`].
    pub fn has_unsynced(&self) -> bool {
        self.end() > self.synced
    }

    /// Offset after every byte pushed so far.
    pub fn end(&self) -> u64 {
        self.next_offset + self.buf_len as u64
    }

    /// Write the rest, flush, verify the checksum, rename to `final_path`, fsync
    /// the directory and remove `remove` (a stale state file), all in one
    /// blocking task. Returns the size and the verified digest. A checksum
    /// mismatch deletes the `.part` and `remove` and fails with an error that
    /// wraps [`Mismatch`].
    pub async fn finish(
        mut self,
        final_path: PathBuf,
        remove: Option<PathBuf>,
    ) -> io::Result<(u64, Option<Checksum>)> {
        let mut carry = self.take_carry().await?;
        if carry.file.is_none() && self.truncate && self.unhashed == 0 {
            // The whole body is here and nothing is on disk yet: one group
            // commit instead of a blocking task of its own.
            return commit::commit(Small {
                part: self.part,
                final_path,
                remove,
                bufs: self.buf,
                verify: carry.verify.take(),
            })
            .await;
        }
        let job = self.batch_job(carry);
        let part = self.part.clone();
        let end = self.next_offset;
        tokio::task::spawn_blocking(move || {
            let Carry { file, verify } = job()?;
            let file = file.expect("the last job opened the file");
            file.set_len(end)?;
            let verified = verify
                .map(|v| v.finish())
                .transpose()
                .map_err(|m| discard(&part, remove.as_deref(), m))?;
            complete(&file, &part, &final_path, remove.as_deref())?;
            Ok((end, verified))
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// The in-order hash of a split download: the connection whose writes reach the
/// hashed prefix feeds it directly; bytes that arrived out of order are read back
/// when the contiguous prefix on disk grows ([`Ordered::catch_up`]).
#[derive(Debug)]
pub struct Ordered {
    verifier: Option<Verifier>,
    /// Bytes `[0, upto)` are hashed.
    upto: u64,
}

impl Ordered {
    /// Hash a file from its first byte.
    pub fn new(verifier: Verifier) -> Arc<std::sync::Mutex<Ordered>> {
        Arc::new(std::sync::Mutex::new(Ordered {
            verifier: Some(verifier),
            upto: 0,
        }))
    }

    /// Feed a batch just written at `offset`, if it continues the hashed prefix
    /// and nobody else is hashing now (what is skipped is read back later).
    fn feed(shared: &std::sync::Mutex<Ordered>, offset: u64, bufs: &[Bytes]) {
        if let Ok(mut o) = shared.try_lock() {
            let Ordered { verifier, upto } = &mut *o;
            if *upto == offset {
                if let Some(v) = verifier.as_mut() {
                    for b in bufs {
                        v.update(b);
                        *upto += b.len() as u64;
                    }
                }
            }
        }
    }

    /// Hash the written bytes `[upto, to)` of `file`, read back (blocking).
    pub fn catch_up(shared: &std::sync::Mutex<Ordered>, file: &File, to: u64) -> io::Result<()> {
        let mut o = shared.lock().unwrap_or_else(|e| e.into_inner());
        let from = o.upto;
        if to > from {
            if let Some(v) = o.verifier.as_mut() {
                v.update_from(file, from, to)?;
            }
            o.upto = to;
        }
        Ok(())
    }

    /// Hash the rest of a file of `size` bytes and check it (blocking).
    pub fn finish(
        shared: &std::sync::Mutex<Ordered>,
        file: &File,
        size: u64,
    ) -> io::Result<Result<Checksum, Mismatch>> {
        Ordered::catch_up(shared, file, size)?;
        let verifier = shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .verifier
            .take()
            .expect("finished once");
        Ok(verifier.finish())
    }
}

/// Writes one connection's range into a shared, pre-sized `.part` at increasing
/// offsets, in batches on the blocking pool with at most one write in flight.
/// Durability is the caller's business (one fdatasync covers every connection).
pub struct SegmentWriter {
    file: Arc<File>,
    /// The download's in-order hash, if a checksum is verified.
    hash: Option<Arc<std::sync::Mutex<Ordered>>>,
    inflight: Option<JoinHandle<io::Result<u64>>>,
    /// The batch filling. Chunks are copied in rather than kept: a chunk is a
    /// slice of the connection's read buffer and would keep all of it alive
    /// (with 16 connections, several MiB more than the bytes held).
    buf: BytesMut,
    /// Offset where the next batch goes.
    next_offset: u64,
    /// A write failed: bytes before `next_offset` may be missing, so nothing
    /// more is written or reported as written.
    failed: bool,
}

impl SegmentWriter {
    /// A writer into `file` from `offset`, feeding `hash` when its bytes
    /// continue the hashed prefix.
    pub fn new(file: Arc<File>, offset: u64, hash: Option<Arc<std::sync::Mutex<Ordered>>>) -> Self {
        SegmentWriter {
            file,
            hash,
            inflight: None,
            buf: BytesMut::new(),
            next_offset: offset,
            failed: false,
        }
    }

    /// Take one chunk. When a batch is issued, returns the offset up to which
    /// every earlier byte has been written (handed to the kernel).
    pub async fn push(&mut self, chunk: Bytes) -> io::Result<Option<u64>> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(BATCH_BYTES);
        }
        self.buf.extend_from_slice(&chunk);
        drop(chunk);
        if self.buf.len() < BATCH_BYTES {
            return Ok(None);
        }
        let written = self.wait().await?;
        self.issue();
        Ok(written)
    }

    /// Write everything taken so far; returns the offset after the last byte.
    pub async fn flush(&mut self) -> io::Result<u64> {
        self.wait().await?;
        if !self.buf.is_empty() {
            self.issue();
            self.wait().await?;
        }
        Ok(self.next_offset)
    }

    /// The end of the write in flight, once it completed. After a failed write
    /// every call fails: the offsets after it were never written.
    async fn wait(&mut self) -> io::Result<Option<u64>> {
        if self.failed {
            return Err(io::Error::other("an earlier write to this file failed"));
        }
        let result = match self.inflight.take() {
            Some(job) => job
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map(Some),
            None => Ok(None),
        };
        self.failed = result.is_err();
        result
    }

    fn issue(&mut self) {
        let bufs = [std::mem::take(&mut self.buf).freeze()];
        let offset = self.next_offset;
        self.next_offset += bufs[0].len() as u64;
        let end = self.next_offset;
        let file = self.file.clone();
        let hash = self.hash.clone();
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            write_at(&file, &bufs, offset)?;
            if let Some(h) = &hash {
                Ordered::feed(h, offset, &bufs);
            }
            Ok(end)
        }));
    }
}

fn open_part(part: &Path, truncate: bool, offset: u64) -> io::Result<File> {
    let file = create_nofollow(part, truncate)?;
    if !truncate {
        // Bytes past the recorded offset were never confirmed: drop them.
        file.set_len(offset)?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_land_in_order_and_finish_renames() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let fin = dir.path().join("f");
        let mut w = PartWriter::new(part.clone(), 0, None);
        let mut expected = Vec::new();
        for i in 0..40u32 {
            let chunk: Vec<u8> = (0..50_000).map(|j| (i * 7 + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            w.push(Bytes::from(chunk)).await.unwrap();
        }
        assert_eq!(w.end(), expected.len() as u64);
        let (n, verified) = w.finish(fin.clone(), None).await.unwrap();
        assert_eq!(n, expected.len() as u64);
        assert!(verified.is_none());
        assert_eq!(std::fs::read(&fin).unwrap(), expected);
        assert!(!part.exists());
    }

    #[tokio::test]
    async fn segment_writers_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("s.part");
        let file = Arc::new(create_nofollow(&part, true).unwrap());
        file.set_len(2 * BATCH_BYTES as u64 + 10).unwrap();
        let body: Vec<u8> = (0..2 * BATCH_BYTES + 10).map(|i| (i % 251) as u8).collect();
        let half = BATCH_BYTES + 5;
        let mut a = SegmentWriter::new(file.clone(), 0, None);
        let mut b = SegmentWriter::new(file.clone(), half as u64, None);
        for piece in body[half..].chunks(70_000) {
            b.push(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        for piece in body[..half].chunks(70_000) {
            a.push(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert_eq!(a.flush().await.unwrap(), half as u64);
        assert_eq!(b.flush().await.unwrap(), body.len() as u64);
        assert_eq!(std::fs::read(&part).unwrap(), body);
    }

    #[tokio::test]
    async fn a_failed_segment_write_is_never_reported_written() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("ro.part");
        std::fs::write(&part, b"").unwrap();
        // A read-only handle: every positional write fails (EBADF).
        let file = Arc::new(File::open(&part).unwrap());
        let mut w = SegmentWriter::new(file, 0, None);
        w.push(Bytes::from(vec![7u8; BATCH_BYTES])).await.unwrap();
        assert!(w.flush().await.is_err(), "the failed batch must not count");
        // Nothing is buffered or in flight now; the batch is still missing.
        assert!(w.flush().await.is_err(), "and it stays failed");
    }

    #[tokio::test]
    async fn resume_drops_unconfirmed_tail() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("g.part");
        std::fs::write(&part, b"confirmed-garbage").unwrap();
        let mut w = PartWriter::new(part.clone(), 9, None);
        w.push(Bytes::from_static(b"+rest")).await.unwrap();
        assert_eq!(w.sync(false).await.unwrap(), 14);
        assert_eq!(std::fs::read(&part).unwrap(), b"confirmed+rest");
    }

    #[tokio::test]
    async fn after_a_failed_write_nothing_is_reported_durable() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("later");
        let part = sub.join("f.part");
        let mut w = PartWriter::new(part.clone(), 0, None);
        // The first batch fails: its directory does not exist yet.
        w.push(Bytes::from(vec![1u8; BATCH_BYTES])).await.unwrap();
        w.push(Bytes::from_static(b"tail")).await.unwrap();
        assert!(w.sync(false).await.is_err());
        // Even once the file could be opened, the first batch's bytes are
        // missing: the writer must not reopen and call the rest durable.
        std::fs::create_dir(&sub).unwrap();
        assert!(w.sync(false).await.is_err());
        assert!(!part.exists(), "nothing written after the failure");
    }

    #[tokio::test]
    async fn a_symlink_at_the_part_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let part = dir.path().join("h.part");
        std::os::unix::fs::symlink(&target, &part).unwrap();
        let mut w = PartWriter::new(part, 0, None);
        w.push(Bytes::from_static(b"x")).await.unwrap();
        assert!(w.sync(false).await.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
