//! Corrupted, truncated and hostile files give errors that name the file.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use storage::{Error, ModelStatus, NameKind, Operation, Store, VersionSpec};

use crate::conformance::{definition, name, write};

async fn overwrite(store: &Store, key: &str, bytes: Bytes) {
    store
        .object_store()
        .put(&Path::from(key), PutPayload::from_bytes(bytes))
        .await
        .unwrap();
}

async fn read_err(store: &Store) -> Error {
    let table = name(NameKind::FeatureGroup, "t");
    match store.table(&table, VersionSpec::Latest).await {
        Err(e) => e,
        Ok(snapshot) => snapshot.read_all(store, None).await.unwrap_err(),
    }
}

async fn data_file_key(store: &Store) -> (String, Bytes) {
    let table = name(NameKind::FeatureGroup, "t");
    let snapshot = store.table(&table, VersionSpec::Latest).await.unwrap();
    let key = format!("tables/t/{}", snapshot.files[0].file.path);
    let bytes = store
        .object_store()
        .get(&Path::from(key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    (key, bytes)
}

#[tokio::test]
async fn truncated_data_file_is_named() {
    let store = Store::memory();
    write(&store, "t", &[("a", 1, 1.0)], Operation::Overwrite).await;
    let (key, bytes) = data_file_key(&store).await;
    overwrite(&store, &key, bytes.slice(..bytes.len() / 2)).await;
    let err = read_err(&store).await;
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&key), "{err}");
}

#[tokio::test]
async fn bit_flipped_data_file_is_named() {
    let store = Store::memory();
    write(&store, "t", &[("a", 1, 1.0)], Operation::Overwrite).await;
    let (key, bytes) = data_file_key(&store).await;
    let mut flipped = bytes.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    overwrite(&store, &key, Bytes::from(flipped)).await;
    let err = read_err(&store).await;
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&key), "{err}");
}

#[tokio::test]
async fn garbled_commit_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).await.unwrap();
    write(&store, "t", &[("a", 1, 1.0)], Operation::Overwrite).await;
    let key = "tables/t/_log/00000000000000000001.json";
    let full = std::fs::read(dir.path().join(key)).unwrap();
    std::fs::write(dir.path().join(key), &full[..full.len() / 3]).unwrap();
    let err = read_err(&store).await;
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains(key), "{err}");
}

#[tokio::test]
async fn unknown_layout_major_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).await.unwrap();
    store.init().await.unwrap();
    let layout = r#"{"format":"fti-layout","version":"2.0","created_at":"2030-01-01T00:00:00Z"}"#;
    std::fs::write(dir.path().join("layout.json"), layout).unwrap();
    let err = Store::open(dir.path().to_str().unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedLayout { .. }), "{err}");
    assert!(err.to_string().contains("2.0"), "{err}");
    // A newer minor of the same major is fine.
    let minor = layout.replace("2.0", "1.7");
    std::fs::write(dir.path().join("layout.json"), minor).unwrap();
    Store::open(dir.path().to_str().unwrap()).await.unwrap();
}

#[tokio::test]
async fn corrupted_model_file_is_named() {
    let store = Store::memory();
    let model = name(NameKind::Model, "m");
    let v = store
        .register_model(
            &model,
            storage::NewModelVersion {
                status: ModelStatus::Accepted,
                gate: serde_json::json!({}),
                task: "binary".into(),
                algorithm: "x".into(),
                features: vec![],
                metrics: serde_json::json!({}),
                params: serde_json::json!({}),
                lineage: Default::default(),
                metadata: Default::default(),
                files: vec![("model.json".into(), Bytes::from_static(b"{\"w\":[1,2,3]}"))],
            },
        )
        .await
        .unwrap();
    let key = format!("models/m/{}", v.files["model.json"].path);
    overwrite(&store, &key, Bytes::from_static(b"{\"w\":[1,2,4]}")).await;
    let err = store.model_file(&v, "model.json").await.unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&key), "{err}");
}

#[tokio::test]
async fn manifest_paths_cannot_escape_their_directory() {
    let store = Store::memory();
    write(&store, "t", &[("a", 1, 1.0)], Operation::Overwrite).await;
    let key = "tables/t/_log/00000000000000000001.json";
    let entry = store
        .object_store()
        .get(&Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut commit: serde_json::Value = serde_json::from_slice(&entry).unwrap();
    commit["add"][0]["path"] = "../../layout.json".into();
    overwrite(&store, key, serde_json::to_vec(&commit).unwrap().into()).await;
    let err = read_err(&store).await;
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
}

#[tokio::test]
async fn bad_names_never_reach_the_store() {
    for bad in ["", "..", "../x", "a/b", "/abs", "a\\b", &"x".repeat(200)] {
        let err = storage::Name::new(NameKind::FeatureGroup, bad).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}");
    }
    // A definition cannot smuggle a bad table name through deserialisation either.
    let mut def = serde_json::to_value(definition("t")).unwrap();
    def["name"] = "../etc".into();
    assert!(serde_json::from_value::<storage::TableDefinition>(def).is_err());
}
