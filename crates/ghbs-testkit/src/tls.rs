//! Certificates for TLS tests, made on the spot with rcgen (ring): a private CA and a server
//! certificate it signs for `127.0.0.1` and `localhost`, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A private certificate authority and one server certificate it issued.
pub struct TestCa {
    /// The CA certificate (PEM): what a client passes as `--ca-cert`.
    pub ca_pem: String,
    /// The server's certificate (PEM).
    pub cert_pem: String,
    /// The server's private key (PEM).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name` and a server certificate for loopback.
    pub fn new(name: &str) -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} server"));
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        TestCa {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir` (replacing them through a rename,
    /// as a certificate renewal does); returns (ca, cert, key) paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let put = |name: &str, text: &str| {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).expect("write PEM");
            std::fs::rename(&tmp, &path).expect("rename PEM");
            path
        };
        (
            put("ca.pem", &self.ca_pem),
            put("cert.pem", &self.cert_pem),
            put("key.pem", &self.key_pem),
        )
    }
}
