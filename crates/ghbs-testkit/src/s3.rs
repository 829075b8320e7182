//! A fresh bucket on the real S3 endpoint that `TEST_S3_ENDPOINT` names (moto in CI).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bucket created for one test, and the `AWS_*` settings that reach it.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    pub endpoint: String,
    pub name: String,
    /// `AWS_ENDPOINT_URL`, dummy credentials, `AWS_REGION`, `AWS_ALLOW_HTTP=true`.
    pub vars: Vec<(String, String)>,
}

impl S3Bucket {
    /// Creates a uniquely named bucket; `None`, with the reason printed, when
    /// `TEST_S3_ENDPOINT` is unset. Panics when the endpoint is set but refuses the bucket.
    pub async fn create(test: &str) -> Option<S3Bucket> {
        let Ok(endpoint) = std::env::var("TEST_S3_ENDPOINT") else {
            eprintln!(
                "skipping {test}: TEST_S3_ENDPOINT is unset (.ci/run starts moto and sets it)"
            );
            return None;
        };
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let name = format!("ghbs-test-{}", uuid::Uuid::new_v4().simple());
        assert!(
            endpoint.starts_with("http://"),
            "TEST_S3_ENDPOINT must be a plain http:// URL"
        );
        // moto accepts an unsigned CreateBucket.
        let response = unsigned(&endpoint, "PUT", &format!("/{name}")).await;
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "create bucket {name}: {}",
            response.lines().next().unwrap_or_default()
        );
        let vars = vec![
            ("AWS_ENDPOINT_URL".to_owned(), endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                "testing-secret".to_owned(),
            ),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
            ("AWS_ALLOW_HTTP".to_owned(), "true".to_owned()),
        ];
        Some(S3Bucket {
            endpoint,
            name,
            vars,
        })
    }

    /// Keys of the bucket under `prefix` (up to 1,000: test-sized), read straight from the
    /// endpoint with an unsigned ListObjectsV2 (moto accepts it), sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let response = unsigned(
            &self.endpoint,
            "GET",
            &format!("/{}?list-type=2&max-keys=1000&prefix={prefix}", self.name),
        )
        .await;
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "list {}: {}",
            self.name,
            response.lines().next().unwrap_or_default()
        );
        let mut keys: Vec<String> = response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect();
        keys.sort();
        keys
    }

    /// The secret access key the settings carry (tests check it is never shown).
    pub fn secret(&self) -> String {
        self.vars
            .iter()
            .find(|(k, _)| k == "AWS_SECRET_ACCESS_KEY")
            .map(|(_, v)| v.clone())
            .expect("the settings carry a secret key")
    }

    /// `s3://{bucket}`.
    pub fn url(&self) -> String {
        format!("s3://{}", self.name)
    }
}

/// One unsigned HTTP/1.1 request to the endpoint (moto takes them); the whole response as text.
async fn unsigned(endpoint: &str, method: &str, target: &str) -> String {
    let authority = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("reach TEST_S3_ENDPOINT");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}
