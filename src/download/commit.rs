//! Group commit for downloads whose whole body arrived in one batch.
//!
//! A small file costs five file-system steps (create the `.part`, write,
//! fdatasync, rename, fsync the directory) and, on the blocking pool, a thread
//! wakeup each. Thousands of small files at once spend more time waking threads
//! than writing. Here one committer thread takes every small file waiting in its
//! queue and runs each step for the whole group: all writes, then all flushes,
//! then all renames, then one fsync per directory. On a disk the first flush
//! commits the journal for the files after it, and a directory is synced once
//! for every rename in it. The guarantees are the same as for a large file: the
//! data is flushed before the rename, the rename is durable before the download
//! is reported done, and a checksum mismatch deletes the `.part`.
//!
//! The answers go back the same way: one hand-over per group to each runtime
//! waiting, which passes them on to its tasks. Answering each file from this
//! thread would wake the runtime once per file.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;

use bytes::Bytes;
use tokio::sync::{mpsc as async_mpsc, oneshot};

use crate::checksum::{Checksum, Mismatch, Verifier};
use crate::fs;

/// The most files committed in one group.
const GROUP: usize = 256;

/// What a commit hands back: the file's size and its verified digest.
pub type Committed = io::Result<(u64, Option<Checksum>)>;

/// One small download, whole in memory, to be written as `part` and renamed
/// to `final_path`; `remove` is a stale state file to delete.
pub struct Small {
    pub part: PathBuf,
    pub final_path: PathBuf,
    pub remove: Option<PathBuf>,
    pub bufs: Vec<Bytes>,
    pub verify: Option<Verifier>,
}

/// One answer for one waiting task.
type Answer = (oneshot::Sender<Committed>, Committed);

/// Where a runtime takes its answers, a group at a time.
type Inbox = async_mpsc::UnboundedSender<Vec<Answer>>;

struct Job {
    small: Small,
    reply: oneshot::Sender<Committed>,
    inbox: Option<Inbox>,
}

/// Write, flush, verify and rename a small download on the committer thread.
pub async fn commit(small: Small) -> Committed {
    let (reply, answer) = oneshot::channel();
    let inbox = inbox();
    committer()
        .send(Job {
            small,
            reply,
            inbox,
        })
        .map_err(|_| io::Error::other("the file committer stopped"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the file committer stopped"))?
}

thread_local! {
    static INBOX: RefCell<Option<Inbox>> = const { RefCell::new(None) };
}

/// This thread's inbox: a task on the current runtime that passes answers on
/// to the tasks waiting for them. A new one when the runtime it was on has
/// gone; `None` outside a runtime (answers then go straight to the task).
fn inbox() -> Option<Inbox> {
    INBOX.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some(inbox) = cell.as_ref().filter(|i| !i.is_closed()) {
            return Some(inbox.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (inbox, mut groups) = async_mpsc::unbounded_channel::<Vec<Answer>>();
        runtime.spawn(async move {
            while let Some(group) = groups.recv().await {
                for (reply, answer) in group {
                    let _ = reply.send(answer);
                }
            }
        });
        *cell = Some(inbox.clone());
        Some(inbox)
    })
}

/// Every answer of a group, handed over once per inbox.
fn answer_all(mut answers: Vec<(Job, Committed)>) {
    while let Some((job, answer)) = answers.pop() {
        let Some(inbox) = job.inbox else {
            let _ = job.reply.send(answer);
            continue;
        };
        let mut group = vec![(job.reply, answer)];
        let mut i = 0;
        while i < answers.len() {
            if answers[i]
                .0
                .inbox
                .as_ref()
                .is_some_and(|o| o.same_channel(&inbox))
            {
                let (other, answer) = answers.swap_remove(i);
                group.push((other.reply, answer));
            } else {
                i += 1;
            }
        }
        // The runtime is gone: nobody is waiting any more, but answer anyway.
        if let Err(async_mpsc::error::SendError(group)) = inbox.send(group) {
            for (reply, answer) in group {
                let _ = reply.send(answer);
            }
        }
    }
}

fn committer() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("volley-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < GROUP {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    commit_group(group);
                }
            })
            .expect("cannot start the file committer thread");
        tx
    })
}

/// A file of the group that passed every step so far.
struct Pending {
    file: File,
    size: u64,
    job: Job,
}

/// Each step for the whole group; a file that fails a step gets its error and
/// leaves the group.
fn commit_group(group: Vec<Job>) {
    let mut answers: Vec<(Job, Committed)> = Vec::with_capacity(group.len());
    let mut pending: Vec<Pending> = Vec::with_capacity(group.len());
    for mut job in group {
        let s = &mut job.small;
        let written = fs::create_nofollow(&s.part, true).and_then(|file| {
            fs::write_at(&file, &s.bufs, 0)?;
            Ok(file)
        });
        match written {
            Ok(file) => {
                let size = s.bufs.iter().map(|b| b.len() as u64).sum();
                if let Some(v) = s.verify.as_mut() {
                    s.bufs.iter().for_each(|b| v.update(b));
                }
                s.bufs = Vec::new();
                pending.push(Pending { file, size, job });
            }
            Err(e) => answers.push((job, Err(e))),
        }
    }
    let mut renamed: Vec<(Pending, Option<Checksum>)> = Vec::with_capacity(pending.len());
    for mut p in pending {
        let s = &mut p.job.small;
        let step = p.file.sync_data().and_then(|()| {
            let verified = s
                .verify
                .take()
                .map(Verifier::finish)
                .transpose()
                .map_err(|m| discard(&s.part, s.remove.as_deref(), m))?;
            std::fs::rename(&s.part, &s.final_path)?;
            if let Some(state) = &s.remove {
                fs::remove_if_exists(state)?;
            }
            Ok(verified)
        });
        match step {
            Ok(verified) => renamed.push((p, verified)),
            Err(e) => answers.push((p.job, Err(e))),
        }
    }
    // One directory fsync covers every rename in it.
    renamed.sort_by(|a, b| {
        fs::parent_dir(&a.0.job.small.final_path).cmp(fs::parent_dir(&b.0.job.small.final_path))
    });
    let mut synced: Option<(&Path, Result<(), io::ErrorKind>)> = None;
    let mut replies = Vec::with_capacity(renamed.len());
    for (p, verified) in &renamed {
        let dir = fs::parent_dir(&p.job.small.final_path);
        let result = match synced {
            Some((d, r)) if d == dir => r,
            _ => {
                let r = fs::sync_dir(dir).map_err(|e| e.kind());
                synced = Some((dir, r));
                r
            }
        };
        replies.push(result.map(|()| (p.size, verified.clone())).map_err(|kind| {
            io::Error::new(kind, format!("cannot sync directory {}", dir.display()))
        }));
    }
    for ((p, _), reply) in renamed.into_iter().zip(replies) {
        answers.push((p.job, reply));
    }
    answer_all(answers);
}

/// A checksum mismatch: the `.part` and its state are deleted (the bytes are
/// wrong, resuming them would keep them), and the mismatch is returned as an
/// I/O error that wraps it.
pub fn discard(part: &Path, state: Option<&Path>, mismatch: Mismatch) -> io::Error {
    let _ = std::fs::remove_file(part);
    if let Some(s) = state {
        let _ = std::fs::remove_file(s);
    }
    io::Error::other(mismatch)
}

/// The mismatch inside an error made by [`discard`].
pub fn as_mismatch(e: &io::Error) -> Option<&Mismatch> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Mismatch>())
}

/// The last step of every download to a file, on a blocking thread: flush `part`,
/// rename it to `final_path`, remove the stale state file `remove`, and fsync the
/// directory so the rename survives a crash.
pub fn complete(
    file: &File,
    part: &Path,
    final_path: &Path,
    remove: Option<&Path>,
) -> io::Result<()> {
    file.sync_data()?;
    std::fs::rename(part, final_path)?;
    if let Some(state) = remove {
        fs::remove_if_exists(state)?;
    }
    fs::sync_dir(fs::parent_dir(final_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::Checksum;

    fn small(dir: &Path, name: &str, body: &'static [u8], verify: Option<Verifier>) -> Small {
        Small {
            part: dir.join(format!("{name}.part")),
            final_path: dir.join(name),
            remove: None,
            bufs: vec![Bytes::from_static(body)],
            verify,
        }
    }

    #[tokio::test]
    async fn many_small_files_land_whole_under_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..300).map(|i| format!("f{i}")).collect();
        let commits = names
            .iter()
            .map(|n| commit(small(dir.path(), n, b"hello", None)));
        for r in futures_util::future::join_all(commits).await {
            assert_eq!(r.unwrap().0, 5);
        }
        for n in &names {
            assert_eq!(std::fs::read(dir.path().join(n)).unwrap(), b"hello");
            assert!(!dir.path().join(format!("{n}.part")).exists());
        }
    }

    #[test]
    fn answers_reach_tasks_on_each_new_runtime_and_on_worker_threads() {
        let dir = tempfile::tempdir().unwrap();
        let commit_some = |tag: &str| {
            let commits =
                (0..40).map(|i| commit(small(dir.path(), &format!("{tag}{i}"), b"x", None)));
            futures_util::future::join_all(commits)
        };
        // A second runtime on this thread finds the first one's inbox closed.
        for round in ["a", "b"] {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            for r in rt.block_on(commit_some(round)) {
                assert_eq!(r.unwrap().0, 1);
            }
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.path().to_path_buf();
                rt.spawn(async move { commit(small(&dir, &format!("m{t}"), b"mt", None)).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(rt.block_on(t).unwrap().unwrap().0, 2);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 88);
    }

    #[tokio::test]
    async fn a_mismatch_deletes_the_part_and_keeps_the_name_free() {
        let dir = tempfile::tempdir().unwrap();
        let wrong: Checksum = format!("sha-256={}", "0".repeat(64)).parse().unwrap();
        let verify = Verifier::new(vec![wrong]);
        let err = commit(small(dir.path(), "x", b"body", verify))
            .await
            .unwrap_err();
        assert!(as_mismatch(&err).is_some(), "{err}");
        assert!(!dir.path().join("x").exists());
        assert!(!dir.path().join("x.part").exists());
    }

    #[tokio::test]
    async fn a_failed_file_does_not_fail_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir");
        let (bad, good) = tokio::join!(
            commit(small(&missing, "a", b"a", None)),
            commit(small(dir.path(), "b", b"b", None)),
        );
        assert!(bad.is_err());
        assert_eq!(good.unwrap().0, 1);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"b");
    }
}
