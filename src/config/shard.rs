//! Which shard this run is (`--shard K/N`, `--shard auto` with
//! `--shard-count`): from the flags or keys, or from the environment of a batch
//! scheduler, a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, N from
//! `--shard-count`) or a Slurm job array (`SLURM_ARRAY_TASK_ID` minus
//! `SLURM_ARRAY_TASK_MIN`, N from `SLURM_ARRAY_TASK_COUNT` unless
//! `--shard-count` says otherwise). Which downloads a shard keeps is
//! [`crate::input::shard`]'s business.

use crate::options::{Shard, ShardArg};

/// Kubernetes Indexed Job: the index of this pod's completion.
pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Slurm job array: this task's id.
pub const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
/// Slurm job array: the lowest task id (subtracted from the id).
pub const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
/// Slurm job array: the number of tasks.
pub const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";

/// Why a shard cannot be used. Always a usage error (exit code 2), before any
/// download; each message names the flag or variable at fault and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// `--shard auto` outside a Kubernetes Indexed Job or Slurm job array.
    #[error("--shard auto: neither {K8S_INDEX} (Kubernetes Indexed Job) nor {SLURM_ID} (Slurm job array) is set; run it inside one of them, or give the shard as --shard K/N")]
    NoScheduler,
    /// A scheduler variable that is not a whole number.
    #[error("--shard auto: {var}='{value}' is not a whole number (0 or more); unset it or fix the job definition")]
    BadVariable {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The index is known but the count is not.
    #[error("--shard auto: {var} is set but the number of shards is not known; pass --shard-count N ({hint})")]
    NoCount {
        /// The variable the index came from.
        var: &'static str,
        /// Where N comes from for this scheduler.
        hint: &'static str,
    },
    /// A shard count of zero.
    #[error("{from} is 0: the number of shards must be at least 1")]
    ZeroCount {
        /// The flag or variable it came from.
        from: String,
    },
    /// The index the scheduler gave is not below the count.
    #[error("--shard auto: shard index {index} ({index_from}) is not below the number of shards {count} ({count_from}); shards are numbered 0 to {last}: {hint}", last = count - 1)]
    OutOfRange {
        /// The index.
        index: u64,
        /// Where it came from (`JOB_COMPLETION_INDEX=7`).
        index_from: String,
        /// The count.
        count: u64,
        /// Where it came from (`--shard-count`, `SLURM_ARRAY_TASK_COUNT`).
        count_from: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// `--shard-count` that disagrees with the N of `--shard K/N`.
    #[error("--shard-count {count} disagrees with --shard {shard}: drop --shard-count (or the shard_count key), or make them agree")]
    CountMismatch {
        /// The `--shard-count`.
        count: u64,
        /// The `--shard K/N`.
        shard: Shard,
    },
    /// `--shard-count` without `--shard`.
    #[error("--shard-count {0} needs --shard auto (or --shard K/N); without --shard every download is kept")]
    CountWithoutShard(u64),
}

/// Resolve `--shard` and `--shard-count` (flags or keys) into the shard of this
/// run, reading the scheduler's variables through `env` for `auto`. `None`:
/// no sharding, every download is kept.
pub fn resolve(
    arg: Option<ShardArg>,
    count: Option<u64>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Shard>, ShardError> {
    if count == Some(0) {
        return Err(ShardError::ZeroCount {
            from: "--shard-count".into(),
        });
    }
    match arg {
        None => match count {
            Some(n) => Err(ShardError::CountWithoutShard(n)),
            None => Ok(None),
        },
        Some(ShardArg::Fixed(shard)) => match count {
            Some(n) if n != shard.count() => Err(ShardError::CountMismatch { count: n, shard }),
            _ => Ok(Some(shard)),
        },
        Some(ShardArg::Auto) => from_scheduler(count, env).map(Some),
    }
}

/// `--shard auto`: Kubernetes first, then Slurm.
fn from_scheduler(
    count: Option<u64>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Shard, ShardError> {
    let var = |name: &'static str| env(name).filter(|v| !v.trim().is_empty());
    let number = |name: &'static str, value: String| {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| ShardError::BadVariable { var: name, value })
    };
    let (index, index_from, count, count_from, hint) = if let Some(value) = var(K8S_INDEX) {
        let index = number(K8S_INDEX, value)?;
        let count = count.ok_or(ShardError::NoCount {
            var: K8S_INDEX,
            hint: "the Job's completions",
        })?;
        (
            index,
            format!("{K8S_INDEX}={index}"),
            count,
            "--shard-count",
            "make --shard-count the Job's completions",
        )
    } else if let Some(value) = var(SLURM_ID) {
        let id = number(SLURM_ID, value)?;
        let min = var(SLURM_MIN).map(|v| number(SLURM_MIN, v)).transpose()?;
        let (count, count_from) = match count {
            Some(n) => (n, "--shard-count"),
            None => {
                let n = var(SLURM_COUNT).ok_or(ShardError::NoCount {
                    var: SLURM_ID,
                    hint: "the number of array tasks; Slurm sets SLURM_ARRAY_TASK_COUNT in an array job",
                })?;
                (number(SLURM_COUNT, n)?, SLURM_COUNT)
            }
        };
        if count == 0 {
            return Err(ShardError::ZeroCount {
                from: count_from.into(),
            });
        }
        let (index_from, min) = match min {
            Some(min) => (format!("{SLURM_ID}={id} minus {SLURM_MIN}={min}"), min),
            None => (format!("{SLURM_ID}={id}"), 0),
        };
        let Some(index) = id.checked_sub(min) else {
            return Err(ShardError::OutOfRange {
                index: id,
                index_from: format!("{SLURM_ID}={id}, below {SLURM_MIN}={min}"),
                count,
                count_from,
                hint: "run it inside the array it belongs to",
            });
        };
        (
            index,
            index_from,
            count,
            count_from,
            "use a contiguous array (sbatch --array=0-N-1, no step) or pass --shard-count",
        )
    } else {
        return Err(ShardError::NoScheduler);
    };
    Shard::new(index, count).ok_or(ShardError::OutOfRange {
        index,
        index_from,
        count,
        count_from,
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;

    #[test]
    fn fixed_shard_and_count() {
        let s = Shard::new(1, 3).unwrap();
        let fixed = Some(ShardArg::Fixed(s));
        assert_eq!(resolve(None, None, env(&[])), Ok(None));
        assert_eq!(resolve(fixed, None, env(&[])), Ok(Some(s)));
        assert_eq!(resolve(fixed, Some(3), env(&[])), Ok(Some(s)));
        assert!(matches!(
            resolve(fixed, Some(4), env(&[])),
            Err(ShardError::CountMismatch { count: 4, .. })
        ));
        assert_eq!(
            resolve(None, Some(4), env(&[])),
            Err(ShardError::CountWithoutShard(4))
        );
        // A fixed shard ignores the scheduler.
        assert_eq!(resolve(fixed, None, env(&[(K8S_INDEX, "0")])), Ok(Some(s)));
    }

    #[test]
    fn auto_from_a_kubernetes_indexed_job() {
        let auto = Some(ShardArg::Auto);
        assert_eq!(
            resolve(auto, Some(5), env(&[(K8S_INDEX, "4")])),
            Ok(Shard::new(4, 5))
        );
        assert_eq!(
            resolve(auto, None, env(&[(K8S_INDEX, "4")])),
            Err(ShardError::NoCount {
                var: K8S_INDEX,
                hint: "the Job's completions"
            })
        );
        let e = resolve(auto, Some(5), env(&[(K8S_INDEX, "5")])).unwrap_err();
        assert!(matches!(
            e,
            ShardError::OutOfRange {
                index: 5,
                count: 5,
                ..
            }
        ));
        assert!(e.to_string().contains("JOB_COMPLETION_INDEX=5"), "{e}");
        let e = resolve(auto, Some(5), env(&[(K8S_INDEX, "x")])).unwrap_err();
        assert!(e.to_string().contains("JOB_COMPLETION_INDEX='x'"), "{e}");
        assert_eq!(
            resolve(auto, Some(0), env(&[(K8S_INDEX, "0")])),
            Err(ShardError::ZeroCount {
                from: "--shard-count".into()
            })
        );
        // Kubernetes wins when both are set.
        assert_eq!(
            resolve(
                auto,
                Some(3),
                env(&[(K8S_INDEX, "1"), (SLURM_ID, "2"), (SLURM_COUNT, "9")])
            ),
            Ok(Shard::new(1, 3))
        );
    }

    #[test]
    fn auto_from_a_slurm_array() {
        let auto = Some(ShardArg::Auto);
        let slurm = |id, min: Option<&'static str>, count: Option<&'static str>| {
            let mut vars = vec![(SLURM_ID, id)];
            vars.extend(min.map(|m| (SLURM_MIN, m)));
            vars.extend(count.map(|c| (SLURM_COUNT, c)));
            env(&vars)
        };
        assert_eq!(
            resolve(auto, None, slurm("3", None, Some("4"))),
            Ok(Shard::new(3, 4))
        );
        // sbatch --array=1-4: ids 1..=4 are shards 0..=3.
        assert_eq!(
            resolve(auto, None, slurm("4", Some("1"), Some("4"))),
            Ok(Shard::new(3, 4))
        );
        // --shard-count overrides the array's count.
        assert_eq!(
            resolve(auto, Some(10), slurm("7", Some("0"), Some("4"))),
            Ok(Shard::new(7, 10))
        );
        assert!(matches!(
            resolve(auto, None, slurm("3", None, None)),
            Err(ShardError::NoCount { var: SLURM_ID, .. })
        ));
        let e = resolve(auto, None, slurm("4", None, Some("4"))).unwrap_err();
        assert!(matches!(
            e,
            ShardError::OutOfRange {
                index: 4,
                count: 4,
                ..
            }
        ));
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_COUNT"), "{e}");
        assert!(e.to_string().contains("--array"), "{e}");
        let e = resolve(auto, None, slurm("0", Some("2"), Some("4"))).unwrap_err();
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_MIN=2"), "{e}");
        let e = resolve(auto, None, slurm("1", None, Some("0"))).unwrap_err();
        assert_eq!(
            e,
            ShardError::ZeroCount {
                from: SLURM_COUNT.into()
            }
        );
        for (id, min, count, var) in [
            ("one", None, Some("4"), SLURM_ID),
            ("1", Some("-1"), Some("4"), SLURM_MIN),
            ("1", None, Some("4x"), SLURM_COUNT),
        ] {
            let e = resolve(auto, None, slurm(id, min, count)).unwrap_err();
            assert!(
                matches!(e, ShardError::BadVariable { var: v, .. } if v == var),
                "{e:?}"
            );
        }
    }

    #[test]
    fn auto_without_a_scheduler() {
        let e = resolve(Some(ShardArg::Auto), Some(3), env(&[(K8S_INDEX, "")])).unwrap_err();
        assert_eq!(e, ShardError::NoScheduler);
        let msg = e.to_string();
        assert!(msg.contains(K8S_INDEX) && msg.contains(SLURM_ID), "{msg}");
    }
}
