//! TLS to PostgreSQL on both connections: a cluster with a certificate signed
//! by a test CA (made with the `openssl` CLI) that refuses plain connections.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::cluster::chown_to_server_user;
use crate::support::{Cluster, ClusterOptions, wait_until, walhook, walhook_run};

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
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:pg.walhook.test\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
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
    db.psql(
        "CREATE TABLE items (id int PRIMARY KEY);
         INSERT INTO walhook.routes (source_table, resource, apiresource) VALUES ('items', 'item', '/items/{id}');",
    );
    let required = format!("{}?sslmode=require&application_name=walhook_tls", db.url());
    let walhook = walhook_run(&required, &db.slot, &db.publication, &[]);
    walhook.wait_for_log("streaming", Duration::from_secs(60));
    db.psql("INSERT INTO items VALUES (1), (2)");
    wait_until(
        Duration::from_secs(60),
        "2 events stored over TLS",
        || async {
            let n: i64 = db
                .psql("SELECT count(*) FROM walhook.events")
                .parse()
                .unwrap();
            (n >= 2).then_some(())
        },
    )
    .await;
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
    let walsender = db.psql(
        "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)
          WHERE r.application_name = 'walhook_tls'",
    );
    assert_eq!(
        walsender,
        "t",
        "the replication stream is encrypted\n{}",
        walhook.log()
    );
}
