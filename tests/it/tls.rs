//! TLS to PostgreSQL on both connections: a cluster with a certificate signed
//! by a test CA (made with the `openssl` CLI) that refuses plain connections,
//! and one that authenticates a user by its client certificate (`cert` in
//! pg_hba.conf), presented from `sslcert`/`sslkey` by both connections.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::cluster::chown_to_server_user;
use crate::support::{
    ChildProcess, Cluster, ClusterOptions, TestDb, route_items, wait_until, walhook, walhook_run,
};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `{name}.pem`: the request `{name}.csr` signed by `{ca}` with the X.509v3
/// extensions `extensions`.
fn sign(dir: &Path, ca: &str, name: &str, extensions: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
fn certificates(dir: &Path) {
    for ca in ["ca", "other"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-subj",
                &format!("/CN=walhook test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    sign(
        dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:pg.walhook.test\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    chown_to_server_user(dir);
    chown_to_server_user(&dir.join("server.key"));
    chown_to_server_user(&dir.join("server.pem"));
}

/// A routed `items` table, `walhook run` on `url` (and `extra` options) until
/// it streams, and two inserted rows stored as events.
async fn two_events_streamed(db: &TestDb<'_>, url: &str, extra: &[&str]) -> ChildProcess {
    route_items(db, "");
    let walhook = walhook_run(url, &db.slot, &db.publication, extra);
    walhook.wait_for_log("streaming", Duration::from_secs(60));
    db.psql("INSERT INTO items VALUES (1), (2)");
    // psql, not a tokio-postgres client: this cluster refuses connections without TLS
    wait_until(Duration::from_secs(60), "2 events stored", || async {
        let n: i64 = db
            .psql("SELECT count(*) FROM walhook.events")
            .parse()
            .unwrap();
        (n >= 2).then_some(())
    })
    .await;
    walhook
}

/// A `pg_stat_ssl` column of the walsender whose `pg_stat_replication` row
/// matches `filter`.
fn walsender_ssl(db: &TestDb<'_>, column: &str, filter: &str) -> String {
    db.psql(&format!(
        "SELECT s.{column} FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)
          WHERE r.{filter}"
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn both_connections_use_tls_and_certificates_are_checked() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let cluster = Cluster::start(ClusterOptions {
        extra_conf: vec![
            "ssl = on".into(),
            format!(
                "ssl_cert_file = '{}'",
                certs.path().join("server.pem").display()
            ),
            format!(
                "ssl_key_file = '{}'",
                certs.path().join("server.key").display()
            ),
        ],
        hba_first: vec![
            "hostnossl all all 127.0.0.1/32 reject".into(),
            "hostnossl replication all 127.0.0.1/32 reject".into(),
        ],
        ..Default::default()
    });
    let db = cluster.database();
    let ca = certs.path().join("ca.pem");
    let other = certs.path().join("other.pem");

    // plain TCP is refused by this server
    let (status, _, err) = walhook(&[
        "migrate",
        "--database-url",
        &format!("{}?sslmode=disable", db.url()),
    ]);
    assert!(!status.success(), "plain connection must be refused");
    assert!(
        err.contains("no encryption") || err.contains("pg_hba.conf"),
        "{err}"
    );

    // verify-full against the wrong CA fails and says why
    let (status, _, err) = walhook(&[
        "migrate",
        "--database-url",
        &format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            db.url(),
            other.display()
        ),
    ]);
    assert!(
        !status.success(),
        "a certificate from an unknown CA must be refused"
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // verify-full with the right CA works
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url(),
        ca.display()
    );
    let (status, out, err) = walhook(&["migrate", "--database-url", &verified]);
    assert!(status.success(), "{out}\n{err}");

    // the certificate names 127.0.0.1 and pg.walhook.test, not localhost:
    // verify-full refuses the name, verify-ca only checks the chain
    let by_name = db.url().replace("127.0.0.1", "localhost");
    let (status, _, err) = walhook(&[
        "status",
        "--database-url",
        &format!("{by_name}?sslmode=verify-full&sslrootcert={}", ca.display()),
    ]);
    assert!(!status.success(), "verify-full must check the host name");
    assert!(
        err.contains("not valid for name") || err.contains("NotValidForName"),
        "{err}"
    );
    let (status, out, err) = walhook(&[
        "status",
        "--database-url",
        &format!("{by_name}?sslmode=verify-ca&sslrootcert={}", ca.display()),
    ]);
    assert!(
        status.success(),
        "verify-ca checks the chain only: {out}\n{err}"
    );

    // the daemon over sslmode=require: SQL and replication stream, end to end
    let required = format!("{}?sslmode=require&application_name=walhook_tls", db.url());
    let walhook = two_events_streamed(&db, &required, &[]).await;
    let plain = db.psql(
        "SELECT count(*) FILTER (WHERE NOT s.ssl) || '/' || count(*)
           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.application_name = 'walhook_tls'",
    );
    let (unencrypted, total) = plain.split_once('/').unwrap();
    assert_eq!(unencrypted, "0", "every walhook session is encrypted");
    assert!(
        total.parse::<i32>().unwrap() >= 2,
        "SQL and replication sessions: {total}"
    );
    // the replication stream checks its certificate too: a wrong CA there is fatal
    let mut wrong = walhook_run(
        &required,
        &format!("{}_other", db.slot),
        &db.publication,
        &[
            "--replication-url",
            &format!(
                "{}?sslmode=verify-full&sslrootcert={}",
                db.url(),
                other.display()
            ),
        ],
    );
    let exited = wrong
        .wait_exit(Duration::from_secs(60))
        .expect("walhook exits");
    assert!(!exited.success());
    assert!(wrong.log().contains("TLS handshake"), "{}", wrong.log());
    assert_eq!(
        walsender_ssl(&db, "ssl", "application_name = 'walhook_tls'"),
        "t",
        "the replication stream is encrypted\n{}",
        walhook.log()
    );
}

/// A client certificate for `user` signed by `ca` (`{name}.pem`, `{name}.key`):
/// an RSA key (PKCS#8, as `openssl genpkey` writes it) or, with `ec`, a P-256 key
/// in SEC1 form (`EC PRIVATE KEY`).
fn client_certificate(dir: &Path, ca: &str, name: &str, user: &str, ec: bool) {
    let key = format!("{name}.key");
    if ec {
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &key,
            ],
        );
    } else {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key,
            ],
        );
    }
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={user}"),
        ],
    );
    sign(
        dir,
        ca,
        name,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=clientAuth\n",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_authenticate_both_connections() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    certificates(dir);
    // the user's certificate in three key forms, and one from an unknown CA
    client_certificate(dir, "ca", "client", "walhook_cert", false);
    openssl(
        dir,
        &[
            "rsa",
            "-in",
            "client.key",
            "-traditional",
            "-out",
            "client.rsa.key",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "client.key",
            "-out",
            "client.enc.key",
            "-passout",
            "pass:secret",
        ],
    );
    client_certificate(dir, "ca", "client_ec", "walhook_cert", true);
    client_certificate(dir, "other", "stranger", "walhook_cert", false);
    let text = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert!(text("client.key").contains("BEGIN PRIVATE KEY"), "PKCS#8");
    assert!(
        text("client.rsa.key").contains("BEGIN RSA PRIVATE KEY"),
        "PKCS#1"
    );
    assert!(
        text("client_ec.key").contains("BEGIN EC PRIVATE KEY"),
        "SEC1"
    );
    chown_to_server_user(&dir.join("ca.pem"));

    let cluster = Cluster::start(ClusterOptions {
        extra_conf: vec![
            "ssl = on".into(),
            format!("ssl_cert_file = '{}'", dir.join("server.pem").display()),
            format!("ssl_key_file = '{}'", dir.join("server.key").display()),
            format!("ssl_ca_file = '{}'", dir.join("ca.pem").display()),
        ],
        // walhook_cert may connect only with a certificate the CA signed for it
        // (the replication connection too: a logical one matches the database's
        // lines, not `replication`); the harness's postgres user keeps trust
        hba_first: vec![
            "hostssl all walhook_cert 127.0.0.1/32 cert".into(),
            "host all walhook_cert 127.0.0.1/32 reject".into(),
        ],
        ..Default::default()
    });
    cluster.psql("postgres", "CREATE ROLE walhook_cert LOGIN SUPERUSER");
    let db = cluster.database();
    let base = db.url().replace("postgres@", "walhook_cert@").to_string();
    let with = |cert: &str, key: &str| {
        format!(
            "{base}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}&application_name=walhook_cert",
            dir.join("ca.pem").display(),
            dir.join(cert).display(),
            dir.join(key).display()
        )
    };

    // without a certificate the server refuses walhook_cert
    let (status, _, err) = walhook(&[
        "migrate",
        "--database-url",
        &format!("{base}?sslmode=require"),
    ]);
    assert!(!status.success(), "no certificate must be refused");
    assert!(err.contains("certificate"), "{err}");
    // one signed by a CA the server does not trust is refused too
    let (status, _, err) = walhook(&[
        "migrate",
        "--database-url",
        &with("stranger.pem", "stranger.key"),
    ]);
    assert!(
        !status.success(),
        "an unknown CA's certificate must be refused"
    );
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("alert"),
        "{err}"
    );
    // an encrypted key is refused by name, before connecting
    let (status, _, err) = walhook(&[
        "migrate",
        "--database-url",
        &format!(
            "{}&sslpassword=secret",
            with("client.pem", "client.enc.key")
        ),
    ]);
    assert!(!status.success());
    assert!(err.contains("is encrypted (sslpassword)"), "{err}");

    // PKCS#8, PKCS#1 and SEC1 keys all authenticate (key=value form for one)
    let (status, out, err) = walhook(&[
        "migrate",
        "--database-url",
        &with("client.pem", "client.key"),
    ]);
    assert!(status.success(), "PKCS#8: {out}\n{err}");
    let (status, out, err) = walhook(&[
        "status",
        "--database-url",
        &with("client.pem", "client.rsa.key"),
    ]);
    assert!(status.success(), "PKCS#1: {out}\n{err}");
    let key_values = format!(
        "host=127.0.0.1 port={} dbname={} user=walhook_cert sslmode=verify-ca sslrootcert={} \
         sslcert={} sslkey={}",
        cluster.port(),
        db.name,
        dir.join("ca.pem").display(),
        dir.join("client_ec.pem").display(),
        dir.join("client_ec.key").display()
    );
    let (status, out, err) = walhook(&["status", "--database-url", &key_values]);
    assert!(status.success(), "SEC1, key=value: {out}\n{err}");

    // the daemon: SQL sessions and the replication stream, each with the certificate
    let daemon = two_events_streamed(
        &db,
        &with("client.pem", "client.key"),
        &["--replication-url", &with("client_ec.pem", "client_ec.key")],
    )
    .await;
    let sessions = db.psql(
        "SELECT count(*) FILTER (WHERE s.client_dn = '/CN=walhook_cert') || '/' || count(*)
           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.usename = 'walhook_cert' AND a.backend_type = 'client backend'",
    );
    let (with_cert, total) = sessions.split_once('/').unwrap();
    assert!(
        total.parse::<i32>().unwrap() >= 1,
        "SQL sessions: {sessions}"
    );
    assert_eq!(
        with_cert, total,
        "every SQL session presented the certificate"
    );
    assert_eq!(
        walsender_ssl(&db, "client_dn", "usename = 'walhook_cert'"),
        "/CN=walhook_cert",
        "the replication stream presented the certificate\n{}",
        daemon.log()
    );
}
