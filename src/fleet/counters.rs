//! Fleet-wide counters: caps and IP velocity (INCR per window), client
//! rate limits (GCRA).

use super::Fleet;

impl Fleet {
    /// Counts one event on fleet-wide counters (INCR, expiring with their
    /// window), one round trip for all; `None` when Redis is unavailable
    /// (the caller counts locally).
    pub async fn count(&self, keys: &[(usize, String, u64)]) -> Option<Vec<(usize, u64)>> {
        const INCR: &str = "local n = redis.call('INCR', KEYS[1]) \
            if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n";
        let full: Vec<(String, u64)> = keys
            .iter()
            .map(|(_, k, ms)| (self.key(k), ms + 1000))
            .collect();
        let counts: Vec<u64> = self
            .call(|mut c| async move {
                let mut pipe = redis::pipe();
                for (k, ttl) in &full {
                    pipe.cmd("EVAL").arg(INCR).arg(1).arg(k).arg(*ttl);
                }
                pipe.query_async(&mut c).await
            })
            .await
            .ok()?;
        Some(keys.iter().map(|(i, _, _)| *i).zip(counts).collect())
    }

    /// Takes one request from a client's fleet-wide rate limit: GCRA,
    /// the same rule as the local token bucket (`rps` a second, `burst`
    /// at once), kept as one key per client holding its theoretical
    /// arrival time on Redis's clock. Unlike counts per fixed window it
    /// never lets twice the limit through across a window's edge.
    /// `Ok(())`, or the seconds until a request would pass; `None` when
    /// Redis is unavailable (the caller limits locally).
    pub async fn rate_take(&self, client: &str, rps: u32, burst: u32) -> Option<Result<(), u64>> {
        const GCRA: &str = "if redis.replicate_commands then redis.replicate_commands() end \
            local t = redis.call('TIME') \
            local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) \
            local interval = tonumber(ARGV[1]) \
            local tolerance = tonumber(ARGV[2]) \
            local tat = tonumber(redis.call('GET', KEYS[1]) or '0') \
            if tat < now then tat = now end \
            local wait = tat - tolerance - now \
            if wait > 0 then return wait end \
            local next = tat + interval \
            redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.floor((next - now) / 1000) + 1000) \
            return 0";
        let rps = u64::from(rps.max(1));
        let interval = 1_000_000 / rps;
        let tolerance = interval * u64::from(burst.max(1) - 1);
        let key = self.key(&format!("rl:{client}"));
        let wait_us: u64 = self
            .call(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(GCRA)
                    .arg(1)
                    .arg(&key)
                    .arg(interval)
                    .arg(tolerance)
                    .query_async(&mut c)
                    .await
            })
            .await
            .ok()?;
        Some(if wait_us == 0 {
            Ok(())
        } else {
            Err(wait_us.div_ceil(1_000_000).max(1))
        })
    }
}

impl Fleet {
    /// Claims the first conversion of a click for an event, fleet-wide:
    /// `SET NX` with the click window as its life. `Ok(None)`: this one is
    /// the first; `Ok(Some(t))`: the first came at `t` (Unix seconds);
    /// `None` when Redis is unavailable (the caller remembers locally).
    pub async fn first_conversion(
        &self,
        click_id: &str,
        event: &str,
        at: i64,
        ttl_ms: u64,
    ) -> Option<Option<i64>> {
        const CLAIM: &str = "local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) \
            if ok then return -1 end return tonumber(redis.call('GET', KEYS[1]) or '-1')";
        let key = self.key(&format!("conv:{click_id}:{event}"));
        let first: i64 = self
            .call(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(CLAIM)
                    .arg(1)
                    .arg(&key)
                    .arg(at)
                    .arg(ttl_ms)
                    .query_async(&mut c)
                    .await
            })
            .await
            .ok()?;
        Some((first >= 0).then_some(first))
    }
}
