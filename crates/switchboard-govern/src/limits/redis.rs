//! Windows shared by every replica through Redis, one sorted set per window, checked and marked
//! by one Lua script so concurrent replicas cannot both take the last slot. When Redis cannot be
//! reached the limits fall back to this process's own windows, with a warning, rather than
//! refusing or stalling requests; Redis is tried again after a short pause.

use super::{Mark, MemoryWindows, Tripped, WINDOW, Windows};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchboard_core::{Error, Result};
use tokio::sync::OnceCell;

/// How long a Redis call may take before the hop falls back to local windows.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// How long local windows are used after Redis failed, before Redis is tried again.
const FALLBACK_PAUSE: Duration = Duration::from_secs(5);

/// Marks are `member|weight` members scored by the time they were added (Redis's own clock, so
/// replicas with skewed clocks agree). ARGV: the window in ms, then per key: member, weight,
/// limit (-1: none). Returns `{0, 0}` when admitted, else `{index (1-based), wait in ms}`.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local function weight_of(m) return tonumber(string.match(m, '|(%d+)$')) or 0 end
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
end
for i, key in ipairs(KEYS) do
  local member = ARGV[i * 3 - 1] .. '|' .. ARGV[i * 3]
  local weight = tonumber(ARGV[i * 3])
  local limit = tonumber(ARGV[i * 3 + 1])
  if limit >= 0 and not redis.call('ZSCORE', key, member) then
    local marks = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    local total = 0
    for j = 1, #marks, 2 do total = total + weight_of(marks[j]) end
    local need = math.max(weight, 1)
    if total + need > limit then
      local freed, wait = 0, window
      for j = 1, #marks, 2 do
        freed = freed + weight_of(marks[j])
        if total - freed + need <= limit then
          wait = tonumber(marks[j + 1]) + window - now
          break
        end
      end
      return {i, wait}
    end
  end
end
for i, key in ipairs(KEYS) do
  if tonumber(ARGV[i * 3]) > 0 then
    redis.call('ZADD', key, now, ARGV[i * 3 - 1] .. '|' .. ARGV[i * 3])
    redis.call('PEXPIRE', key, window)
  end
end
return {0, 0}
";

/// Windows in Redis, falling back to [`MemoryWindows`] while Redis is unavailable.
pub struct RedisWindows {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    local: MemoryWindows,
    /// Until when the local windows are used, after a Redis failure.
    fallback_until: Mutex<Option<Instant>>,
    /// Where Redis is, for messages: the URL without its password.
    target: String,
}

impl RedisWindows {
    /// Windows at `url` (`redis://[user:password@]host:port[/db]`) under keys starting with
    /// `prefix`. Nothing is connected yet: a Redis that is down at start-up degrades the limits
    /// to local ones, it does not stop the service.
    pub fn new(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::config(format!("limits.redis: not a Redis URL: {:?}", e.kind())))?;
        let info = client.get_connection_info();
        let target = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        // A hash tag keeps every key of one deployment in one Redis Cluster slot, as the script needs.
        Ok(Self {
            client,
            connection: OnceCell::new(),
            script: redis::Script::new(ACQUIRE),
            prefix: format!("{{{prefix}}}:"),
            local: MemoryWindows::new(),
            fallback_until: Mutex::new(None),
            target,
        })
    }

    /// Where Redis is, without a password.
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn acquire_in_redis(&self, marks: &[Mark]) -> redis::RedisResult<(i64, i64)> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let connection = self
            .connection
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await?;
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(WINDOW.as_millis() as u64);
        for mark in marks {
            invocation.key(format!("{}{}", self.prefix, mark.key));
            invocation.arg(&mark.member).arg(mark.weight).arg(mark.limit.map_or(-1, |l| l as i64));
        }
        let mut connection = connection.clone();
        tokio::time::timeout(REDIS_TIMEOUT * 2, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out")))?
    }

    fn in_fallback(&self) -> bool {
        let mut until = self.fallback_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn fall_back(&self, e: &redis::RedisError) {
        let mut until = self.fallback_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *until = Some(Instant::now() + FALLBACK_PAUSE);
        tracing::warn!(redis = %self.target, error = %e,
            "limits: Redis is unavailable; counting rate limits in this process only until it is back");
    }
}

#[async_trait]
impl Windows for RedisWindows {
    async fn acquire(&self, marks: &[Mark]) -> Result<(), Tripped> {
        if marks.is_empty() {
            return Ok(());
        }
        if !self.in_fallback() {
            match self.acquire_in_redis(marks).await {
                Ok((0, _)) => return Ok(()),
                Ok((index, wait_ms)) => {
                    let index = usize::try_from(index - 1).unwrap_or_default().min(marks.len() - 1);
                    let retry_after = Duration::from_millis(u64::try_from(wait_ms).unwrap_or_default());
                    return Err(Tripped { index, retry_after });
                }
                Err(e) => self.fall_back(&e),
            }
        }
        self.local.acquire(marks).await
    }
}
