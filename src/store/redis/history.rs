//! Taking sessions' closed history buckets: one `FCALL chatpulse_history_take`
//! per session (its keys share the session's slot), pipelined in chunks, so
//! a flush of many sessions costs one round trip per chunk and node.

use fred::prelude::*;

use super::{RedisLiveStore, keys};
use crate::domain::OverlayId;
use crate::domain::history::BucketCounters;
use crate::store::LiveStoreError;

/// Sessions per pipelined batch.
const TAKE_CHUNK: usize = 256;

/// One bucket as `history_take` returns it: `start,open,close,min,max,for,
/// against,voters`. Anything else is dropped (a garbage bucket is lost
/// history, never a wrong row).
pub(super) fn parse_bucket(line: &str) -> Option<BucketCounters> {
    let mut parts = line.split(',').map(|p| p.parse::<f64>().ok().filter(|v| v.is_finite()));
    let mut next = || parts.next().flatten();
    let (start, open, close, min, max) = (next()?, next()?, next()?, next()?, next()?);
    let (votes_for, votes_against, voters) = (next()?, next()?, next()?);
    let count = |v: f64| (v >= 0.0 && v <= f64::from(u32::MAX)).then_some(v as u32);
    Some(BucketCounters {
        start_ms: start as i64,
        value_open: open,
        value_close: close,
        value_min: min,
        value_max: max,
        votes_for: count(votes_for)?,
        votes_against: count(votes_against)?,
        voters: count(voters)?,
    })
}

impl RedisLiveStore {
    pub(super) async fn take_history(
        &self,
        overlays: &[OverlayId],
        instance: &str,
        claim_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(OverlayId, Vec<BucketCounters>)>, LiveStoreError> {
        let mut out = Vec::new();
        let args = vec![now_ms.to_string(), instance.to_owned(), claim_ms.to_string()];
        for chunk in overlays.chunks(TAKE_CHUNK) {
            let replies: Vec<Value> = self
                .call("take_buckets", || async {
                    let pipeline = self.client.pipeline();
                    for overlay in chunk {
                        let keys = vec![
                            keys::history(*overlay),
                            keys::history_voters(*overlay),
                            keys::history_closed(*overlay),
                        ];
                        pipeline.fcall::<(), _, _, _>("chatpulse_history_take", keys, args.clone()).await?;
                    }
                    pipeline.all().await
                })
                .await?;
            for (overlay, reply) in chunk.iter().zip(replies) {
                let lines: Vec<String> = reply.convert().unwrap_or_default();
                let buckets: Vec<BucketCounters> = lines.iter().filter_map(|l| parse_bucket(l)).collect();
                if !buckets.is_empty() {
                    out.push((*overlay, buckets));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_line_parses_and_garbage_is_dropped() {
        let b = parse_bucket("1700000010000,5,-12.5,-20,15,3,2,4").unwrap();
        assert_eq!(
            b,
            BucketCounters {
                start_ms: 1_700_000_010_000,
                value_open: 5.0,
                value_close: -12.5,
                value_min: -20.0,
                value_max: 15.0,
                votes_for: 3,
                votes_against: 2,
                voters: 4,
            }
        );
        for bad in ["", "1,2,3", "1,2,3,4,5,6,7,x", "1,2,3,4,5,-1,7,8", "1,nan,3,4,5,6,7,8", "1,inf,3,4,5,6,7,8"] {
            assert_eq!(parse_bucket(bad), None, "{bad}");
        }
    }
}
