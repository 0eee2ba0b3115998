//! Create-only numbered logs: the one commit mechanism behind table versions, model versions,
//! alias moves and snapshot pointers.
//!
//! Entry `n` of a log is the object `<dir>/<n:020>.json`, written with `PutMode::Create`, so of
//! all writers trying to write entry `n`, exactly one succeeds on every backend (local
//! filesystem, memory, S3 with `If-None-Match`). The newest entry is the log's current state.

use bytes::Bytes;
use object_store::path::Path;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::layout::{entry_file_name, parse_entry_file_name};
use crate::store::{Created, Store};

/// Outcome of trying to write one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Our entry is now entry `n`.
    Yes,
    /// Another writer owns entry `n`.
    Taken,
}

/// The entry numbers present in `dir`, ascending.
pub(crate) async fn entry_numbers(store: &Store, dir: &Path) -> Result<Vec<u64>> {
    let mut numbers: Vec<u64> = store
        .list(dir)
        .await?
        .iter()
        .filter(|meta| {
            meta.location
                .prefix_match(dir)
                .is_some_and(|mut rest| rest.nth(1).is_none())
        })
        .filter_map(|meta| meta.location.filename().and_then(parse_entry_file_name))
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// The newest entry number of `dir`, if any.
pub(crate) async fn latest(store: &Store, dir: &Path) -> Result<Option<u64>> {
    Ok(entry_numbers(store, dir).await?.last().copied())
}

/// Tries to write `bytes` as entry `number` of `dir`.
///
/// If the entry exists and holds exactly `bytes`, it is ours (an earlier attempt of this put
/// succeeded but its response was lost and the client retried), so this reports success.
pub(crate) async fn try_append(
    store: &Store,
    dir: &Path,
    number: u64,
    bytes: Bytes,
) -> Result<Appended> {
    let path = dir.clone().join(entry_file_name(number));
    match store.put_create(&path, bytes.clone()).await? {
        Created::Yes => Ok(Appended::Yes),
        Created::AlreadyExists => match store.get_bytes(&path).await {
            Ok(existing) if existing == bytes => Ok(Appended::Yes),
            Ok(_) => Ok(Appended::Taken),
            // S3 may answer "conflict" while another conditional put of the key is in flight
            // and not yet visible: someone else is taking it.
            Err(Error::NotFound { .. }) => Ok(Appended::Taken),
            Err(e) => Err(e),
        },
    }
}

/// Reads and decodes entry `number` of `dir`.
pub(crate) async fn read_entry<T: DeserializeOwned>(
    store: &Store,
    dir: &Path,
    number: u64,
) -> Result<T> {
    store
        .get_json(&dir.clone().join(entry_file_name(number)))
        .await
}

/// Reads every entry of `dir`, oldest first, fetching up to 16 at a time.
pub(crate) async fn read_all<T: DeserializeOwned + Send>(
    store: &Store,
    dir: &Path,
) -> Result<Vec<(u64, T)>> {
    use futures::{StreamExt, TryStreamExt};
    let numbers = entry_numbers(store, dir).await?;
    futures::stream::iter(numbers)
        .map(|n| async move { read_entry::<T>(store, dir, n).await.map(|e| (n, e)) })
        .buffered(16)
        .try_collect()
        .await
}

/// Fails with [`Error::Corrupted`] if an entry's own number disagrees with its file name.
pub(crate) fn check_number(dir: &Path, file_number: u64, recorded: u64) -> Result<()> {
    if file_number == recorded {
        Ok(())
    } else {
        Err(Error::Corrupted {
            path: dir.clone().join(entry_file_name(file_number)).to_string(),
            reason: format!("entry says it is number {recorded}"),
        })
    }
}
