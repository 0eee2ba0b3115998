//! Key-value exports: JSON lines, CSV and DynamoDB import files in the store, and a direct bulk
//! load into Redis behind an atomically switched pointer.

use redis::AsyncCommands;
use serde_json::json;

use crate::config::ExportFormat;
use crate::error::{Error, Result};

/// The file name of an export format in a snapshot.
pub fn file_name(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Jsonl => "kv.jsonl",
        ExportFormat::Csv => "kv.csv",
        ExportFormat::Dynamodb => "dynamodb.json",
    }
}

/// One export file being built.
pub struct ExportWriter {
    pub format: ExportFormat,
    pub bytes: Vec<u8>,
}

impl ExportWriter {
    pub fn new(format: ExportFormat) -> Self {
        let bytes = match format {
            ExportFormat::Csv => b"key,value,model_version\n".to_vec(),
            _ => Vec::new(),
        };
        ExportWriter { format, bytes }
    }

    /// Takes the bytes built so far.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// Appends one entry.
    pub fn push(&mut self, key: &str, value: &serde_json::Value, model_version: u64) {
        let line = match self.format {
            ExportFormat::Jsonl => {
                json!({"key": key, "value": value, "model_version": model_version}).to_string()
            }
            ExportFormat::Csv => format!(
                "{},{},{model_version}",
                csv_field(key),
                csv_field(&plain(value))
            ),
            ExportFormat::Dynamodb => json!({"Item": {
                "pk": {"S": key},
                "value": dynamo_value(value),
                "model_version": {"N": model_version.to_string()},
            }})
            .to_string(),
        };
        self.bytes.extend_from_slice(line.as_bytes());
        self.bytes.push(b'\n');
    }
}

fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn dynamo_value(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Number(n) => json!({"N": n.to_string()}),
        serde_json::Value::String(s) => json!({"S": s}),
        other => json!({"S": other.to_string()}),
    }
}

/// A Redis target: `<prefix>:<snapshot>:<key>` holds values, `<prefix>:current` the snapshot
/// id readers use, `<prefix>:snapshots` the loaded snapshots, newest first.
pub struct RedisTarget {
    pub url: String,
    pub prefix: String,
    pub keep: usize,
    conn: redis::aio::MultiplexedConnection,
}

fn redis_err(url: &str) -> impl Fn(redis::RedisError) -> Error + '_ {
    move |e| Error::Redis {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// Values written per pipelined round trip.
const PIPELINE: usize = 10_000;

impl RedisTarget {
    pub async fn connect(url: &str, prefix: &str, keep: usize) -> Result<RedisTarget> {
        let client = redis::Client::open(url).map_err(redis_err(url))?;
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| Error::Redis {
            url: url.to_string(),
            message: "connection timed out after 10 s".into(),
        })?
        .map_err(redis_err(url))?;
        Ok(RedisTarget {
            url: url.to_string(),
            prefix: prefix.to_string(),
            keep: keep.max(1),
            conn,
        })
    }

    pub fn current_key(&self) -> String {
        format!("{}:current", self.prefix)
    }

    fn history_key(&self) -> String {
        format!("{}:snapshots", self.prefix)
    }

    /// Writes entries into the snapshot's keyspace, pipelined. Invisible to readers until
    /// [`RedisTarget::switch`].
    pub async fn load(&mut self, snapshot: &str, entries: &[(String, String)]) -> Result<()> {
        for chunk in entries.chunks(PIPELINE) {
            let mut pipe = redis::pipe();
            for (key, value) in chunk {
                pipe.set(format!("{}:{snapshot}:{key}", self.prefix), value)
                    .ignore();
            }
            pipe.query_async::<()>(&mut self.conn)
                .await
                .map_err(redis_err(&self.url))?;
        }
        Ok(())
    }

    /// The snapshot readers currently see.
    pub async fn current(&mut self) -> Result<Option<String>> {
        let key = self.current_key();
        self.conn.get(key).await.map_err(redis_err(&self.url))
    }

    /// Points readers at `snapshot` in one MULTI/EXEC, then deletes keyspaces beyond `keep`.
    pub async fn switch(&mut self, snapshot: &str) -> Result<Vec<String>> {
        let (current, history) = (self.current_key(), self.history_key());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(&current, snapshot)
            .ignore()
            .lrem(&history, 0, snapshot)
            .ignore()
            .lpush(&history, snapshot)
            .ignore();
        pipe.query_async::<()>(&mut self.conn)
            .await
            .map_err(redis_err(&self.url))?;
        self.prune().await
    }

    /// Points readers back at the snapshot loaded before the current one.
    pub async fn rollback(&mut self) -> Result<String> {
        let history: Vec<String> = self
            .conn
            .lrange(self.history_key(), 0, -1)
            .await
            .map_err(redis_err(&self.url))?;
        let previous = history.get(1).cloned().ok_or_else(|| Error::Redis {
            url: self.url.clone(),
            message: format!(
                "{} holds no earlier snapshot to roll back to",
                self.history_key()
            ),
        })?;
        // The previous snapshot moves to the front; the rolled-back one stays in the list so
        // pruning still reclaims its keys later.
        let (current, history_key) = (self.current_key(), self.history_key());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(&current, &previous)
            .ignore()
            .lrem(&history_key, 0, &previous)
            .ignore()
            .lpush(&history_key, &previous)
            .ignore();
        pipe.query_async::<()>(&mut self.conn)
            .await
            .map_err(redis_err(&self.url))?;
        Ok(previous)
    }

    async fn prune(&mut self) -> Result<Vec<String>> {
        let history: Vec<String> = self
            .conn
            .lrange(self.history_key(), 0, -1)
            .await
            .map_err(redis_err(&self.url))?;
        let mut pruned = Vec::new();
        for old in history.iter().skip(self.keep) {
            self.delete_keyspace(old).await?;
            let _: i64 = self
                .conn
                .lrem(self.history_key(), 0, old)
                .await
                .map_err(redis_err(&self.url))?;
            pruned.push(old.clone());
        }
        Ok(pruned)
    }

    /// Whether readers use, or a rollback can restore, this snapshot's keyspace.
    pub async fn is_referenced(&mut self, snapshot: &str) -> Result<bool> {
        let history: Vec<String> = self
            .conn
            .lrange(self.history_key(), 0, -1)
            .await
            .map_err(redis_err(&self.url))?;
        Ok(history.iter().any(|s| s == snapshot)
            || self.current().await?.is_some_and(|c| c == snapshot))
    }

    /// Deletes every key of a snapshot's keyspace (SCAN + UNLINK, never KEYS).
    pub async fn delete_keyspace(&mut self, snapshot: &str) -> Result<()> {
        let pattern = format!("{}:{snapshot}:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut self.conn)
                .await
                .map_err(redis_err(&self.url))?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(&mut self.conn)
                    .await
                    .map_err(redis_err(&self.url))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
