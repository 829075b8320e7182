//! One conformance story run against every backend: `file://` always, `s3://` when
//! `TEST_S3_ENDPOINT` names a real endpoint (moto in CI).

use super::*;

/// A fresh bucket on `TEST_S3_ENDPOINT` and its `AWS_*` settings, or `None` (reason printed).
async fn s3_bucket(test: &str) -> Option<(String, Vec<(String, String)>)> {
    ghbs_testkit::S3Bucket::create(test)
        .await
        .map(|b| (b.name, b.vars))
}

async fn conformance(storage: &Storage) {
    // A missing key is NotFound, never an empty object.
    let err = storage.get("manifests/missing.json").await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::NotFound, "{err}");
    assert!(storage.list("manifests").await.unwrap().is_empty());
    storage.ready().await.unwrap();

    storage
        .put("manifests/a.json", Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap();
    assert_eq!(
        storage.get("manifests/a.json").await.unwrap(),
        Bytes::from_static(b"{\"a\":1}")
    );
    // put replaces.
    storage
        .put("manifests/a.json", Bytes::from_static(b"{\"a\":2}"))
        .await
        .unwrap();
    assert_eq!(
        storage.get("manifests/a.json").await.unwrap(),
        Bytes::from_static(b"{\"a\":2}")
    );

    // put_if_absent writes once and never overwrites.
    assert!(storage
        .put_if_absent(
            "metadata/objects/ab/abcd.json",
            Bytes::from_static(b"first")
        )
        .await
        .unwrap());
    assert!(!storage
        .put_if_absent(
            "metadata/objects/ab/abcd.json",
            Bytes::from_static(b"second")
        )
        .await
        .unwrap());
    assert_eq!(
        storage.get("metadata/objects/ab/abcd.json").await.unwrap(),
        Bytes::from_static(b"first")
    );

    storage
        .put("manifests/b.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(
        storage.list("manifests").await.unwrap(),
        vec!["manifests/a.json", "manifests/b.json"]
    );
    assert_eq!(
        storage.list("metadata").await.unwrap(),
        vec!["metadata/objects/ab/abcd.json"]
    );

    storage.delete("manifests/a.json").await.unwrap();
    assert_eq!(
        storage.get("manifests/a.json").await.unwrap_err().kind,
        StorageErrorKind::NotFound
    );
    // Deleting again is fine.
    storage.delete("manifests/a.json").await.unwrap();
    assert_eq!(
        storage.list("manifests").await.unwrap(),
        vec!["manifests/b.json"]
    );

    files(storage).await;

    // Keys that could escape the root are refused.
    for key in ["", "/abs", "a/../b", "a//b", "./a"] {
        let err = storage.put(key, Bytes::new()).await.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Permanent, "{key:?}");
    }
}

/// Files in and out: a small one as one put, a large one (over the multipart threshold) in
/// parts, both written once, refreshed as the rules say, and read back byte for byte.
async fn files(storage: &Storage) {
    let dir = tempfile::tempdir().unwrap();
    let big_len = MULTIPART_THRESHOLD as usize + (3 << 20) + 17;
    let big: Vec<u8> = (0..big_len).map(|i| (i % 251) as u8).collect();
    for (name, bytes) in [("small", b"tiny".to_vec()), ("big", big)] {
        let src = dir.path().join(name);
        std::fs::write(&src, &bytes).unwrap();
        let key = format!("metadata/objects/cd/{name}.bin");
        assert!(
            storage.put_file_if_absent(&key, &src).await.unwrap(),
            "{name}"
        );
        assert!(
            !storage.put_file_if_absent(&key, &src).await.unwrap(),
            "{name}"
        );
        // Refreshing before reuse (what keeps the garbage collection off an object a commit
        // is about to reference): a small object is rewritten, a large one only when older
        // than `fresh_for`.
        let before = storage.modified(&key).await.unwrap();
        if name == "small" {
            // S3 dates objects to the second.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            assert!(storage
                .put_file_refreshed(&key, &src, std::time::Duration::from_secs(3600))
                .await
                .unwrap());
            assert!(
                storage.modified(&key).await.unwrap() > before,
                "small refreshed"
            );
        } else {
            assert!(!storage
                .put_file_refreshed(&key, &src, std::time::Duration::from_secs(3600))
                .await
                .unwrap());
            assert_eq!(
                storage.modified(&key).await.unwrap(),
                before,
                "big untouched"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            assert!(storage
                .put_file_refreshed(&key, &src, std::time::Duration::from_secs(1))
                .await
                .unwrap());
            assert!(
                storage.modified(&key).await.unwrap() > before,
                "old big rewritten"
            );
        }
        let back = dir.path().join(format!("{name}.back"));
        let n = storage.get_to_file(&key, &back).await.unwrap();
        assert_eq!(n, bytes.len() as u64, "{name}");
        assert!(std::fs::read(&back).unwrap() == bytes, "{name} differs");
        storage.delete(&key).await.unwrap();
    }
    let err = storage
        .get_to_file("metadata/objects/cd/missing.bin", &dir.path().join("m"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn file_storage_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let storage = Storage::from_url(&url).unwrap();
    conformance(&storage).await;
    // Keys are plain files under the root: today's layout, byte for byte.
    assert_eq!(
        std::fs::read(dir.path().join("manifests/b.json")).unwrap(),
        b"{}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("metadata/objects/ab/abcd.json")).unwrap(),
        b"first"
    );
}

#[tokio::test]
async fn s3_storage_conformance() {
    let Some((bucket, vars)) = s3_bucket("s3_storage_conformance").await else {
        return;
    };
    let storage = Storage::from_url_with(&format!("s3://{bucket}"), vars.clone(), None).unwrap();
    conformance(&storage).await;

    // A prefix keeps two installations apart in one bucket.
    let prefixed =
        Storage::from_url_with(&format!("s3://{bucket}/team/a"), vars.clone(), None).unwrap();
    assert!(prefixed.list("manifests").await.unwrap().is_empty());
    prefixed
        .put("manifests/p.json", Bytes::from_static(b"p"))
        .await
        .unwrap();
    assert_eq!(
        storage.get("team/a/manifests/p.json").await.unwrap(),
        Bytes::from_static(b"p")
    );
}

#[tokio::test]
async fn s3_missing_bucket_is_an_error_not_an_empty_store() {
    let Some((_bucket, vars)) = s3_bucket("s3_missing_bucket_is_an_error_not_an_empty_store").await
    else {
        return;
    };
    let storage = Storage::from_url_with("s3://ghbs-no-such-bucket", vars, None).unwrap();
    let err = storage
        .put("manifests/x.json", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_ne!(err.kind, StorageErrorKind::AlreadyExists, "{err}");
}

#[tokio::test]
async fn failing_s3_call_never_shows_the_secret() {
    // Nothing listens on port 9 of loopback: the call fails after (fast) retries.
    let secret = "sUpErSeCrEt/ghbs+0123456789";
    let token = "SeSsIoNtOkEn-ghbs-42";
    let vars = vec![
        (
            "AWS_ENDPOINT_URL".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
        ("AWS_ACCESS_KEY_ID".to_owned(), "AKIDGHBS".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), secret.to_owned()),
        ("AWS_SESSION_TOKEN".to_owned(), token.to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ("AWS_ALLOW_HTTP".to_owned(), "true".to_owned()),
    ];
    let retry = RetryConfig {
        max_retries: 1,
        retry_timeout: std::time::Duration::from_secs(2),
        ..RetryConfig::default()
    };
    let storage = Storage::from_url_with("s3://ghbs-bucket", vars, Some(retry)).unwrap();
    let err = storage
        .put("manifests/x.json", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Transient, "{err}");
    let shown = format!("{err} {err:?} {storage:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(!shown.contains(token), "{shown}");
    let engine_err: EngineError = err.into();
    assert_eq!(engine_err.kind, FailureKind::Transient);
}

#[test]
fn malformed_urls_say_what_is_expected() {
    for url in [
        "",
        "backups",
        "file://relative/path",
        "s3://",
        "s3://UPPER",
        "s3://ab",
        "s3://bucket/../x",
        "gs://bucket",
        "s3://AKID:secret@bucket",
    ] {
        let err = StorageLocation::parse(url).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Permanent);
        assert!(
            err.message
                .contains("expected file:///absolute/path or s3://bucket[/prefix]"),
            "{url}: {err}"
        );
        assert!(!err.message.contains("secret"), "{url}: {err}");
    }
    assert_eq!(
        StorageLocation::parse("s3://my-bucket/a/b/").unwrap(),
        StorageLocation::S3 {
            bucket: "my-bucket".into(),
            prefix: Some("a/b".into())
        }
    );
    assert_eq!(
        StorageLocation::parse("file:///var/lib/ghbs/backups").unwrap(),
        StorageLocation::File("/var/lib/ghbs/backups".into())
    );
}
