//! The examples `walhook dev` runs on and the sample changes it writes to each,
//! every change with the events walhook must turn it into. Every step is its
//! own transaction, so the suspension cascade (directory) and the bulk delete
//! (IAM) show one commit becoming several events, or several rows one event.

mod iam;

use crate::config::Example;

/// One committed transaction of the sample and the event types it yields.
pub struct SampleStep {
    pub what: &'static str,
    pub sql: &'static str,
    pub events: &'static [&'static str],
}

/// An example: its schema and routes, the sample written to it, and what to
/// try by hand afterwards.
pub struct Sample {
    /// Where the schema file lives in the repository.
    pub file: &'static str,
    pub schema: &'static str,
    /// What the schema is, for the progress line.
    pub what: &'static str,
    pub steps: &'static [SampleStep],
    /// SQL to try by hand once the sample is through.
    pub hints: &'static [&'static str],
}

impl Sample {
    pub fn of(example: Example) -> &'static Sample {
        match example {
            Example::Directory => &DIRECTORY,
            Example::Iam => &iam::IAM,
        }
    }

    /// How many events the whole sample yields.
    pub fn expected_events(&self) -> usize {
        self.steps.iter().map(|s| s.events.len()).sum()
    }
}

const DIRECTORY: Sample = Sample {
    file: "sql/examples/directory.sql",
    schema: include_str!("../../sql/examples/directory.sql"),
    what: "example directory schema and its routes",
    steps: STEPS,
    hints: &[
        "UPDATE directory.organisations SET city = 'recife' WHERE organisation_id = '79b34d52-125b-4e5a-8b69-db93e737aa78';",
        "UPDATE directory.software_statements SET status = 'blocked' WHERE software_statement_id = '81b9a364-05ba-4030-ac21-75a46d3fcdb3';",
    ],
};

/// The directory sample, in commit order.
const STEPS: &[SampleStep] = &[
    SampleStep {
        what: "a participant joins the directory",
        sql: "INSERT INTO directory.organisations
                  (organisation_id, organisation_name, legal_entity_name, country_of_registration,
                   registration_number, city, country)
              VALUES ('79b34d52-125b-4e5a-8b69-db93e737aa78', 'east credit union',
                      'east credit union', 'br', '983456', 'rio de janeiro', 'br')",
        events: &["organisation.created"],
    },
    SampleStep {
        what: "it registers an authorisation server",
        sql: "INSERT INTO directory.authorisation_servers
                  (authorisation_server_id, organisation_id, customer_friendly_name, issuer, supports_dcr)
              VALUES ('9f347e44-23a0-4e76-917f-87cd05fd9d2f', '79b34d52-125b-4e5a-8b69-db93e737aa78',
                      'east credit union auth', 'https://auth.east-credit-union.example', true)",
        events: &["authorisation_server.created"],
    },
    SampleStep {
        what: "and a software statement with two transport certificates",
        sql: "BEGIN;
              INSERT INTO directory.software_statements
                  (software_statement_id, organisation_id, client_name, environment, mode,
                   redirect_uri, client_secret)
              VALUES ('81b9a364-05ba-4030-ac21-75a46d3fcdb3', '79b34d52-125b-4e5a-8b69-db93e737aa78',
                      'east credit union app', 'sandbox', 'live',
                      '{https://app.east-credit-union.example/cb}', 'never-sent');
              INSERT INTO directory.certificates (software_statement_id, organisation_id, kid)
              SELECT '81b9a364-05ba-4030-ac21-75a46d3fcdb3', '79b34d52-125b-4e5a-8b69-db93e737aa78',
                     'transport-' || i FROM generate_series(1, 2) i;
              COMMIT",
        events: &[
            "software_statement.created",
            "certificate.created",
            "certificate.created",
        ],
    },
    SampleStep {
        what: "the organisation moves city",
        sql: "UPDATE directory.organisations SET city = 'niteroi'
               WHERE organisation_id = '79b34d52-125b-4e5a-8b69-db93e737aa78'",
        events: &["organisation.updated"],
    },
    SampleStep {
        what: "the software statement is suspended and its certificates disabled, in one transaction",
        sql: "BEGIN;
              UPDATE directory.software_statements SET status = 'suspended'
               WHERE software_statement_id = '81b9a364-05ba-4030-ac21-75a46d3fcdb3';
              UPDATE directory.certificates SET status = 'disabled'
               WHERE software_statement_id = '81b9a364-05ba-4030-ac21-75a46d3fcdb3';
              COMMIT",
        events: &[
            "software_statement.suspended",
            "certificate.disabled",
            "certificate.disabled",
        ],
    },
    SampleStep {
        what: "its client secret is rotated (an excluded column: no event)",
        sql: "UPDATE directory.software_statements SET client_secret = 'rotated'
               WHERE software_statement_id = '81b9a364-05ba-4030-ac21-75a46d3fcdb3'",
        events: &[],
    },
    SampleStep {
        what: "the suspension is lifted",
        sql: "UPDATE directory.software_statements SET status = 'active'
               WHERE software_statement_id = '81b9a364-05ba-4030-ac21-75a46d3fcdb3'",
        events: &["software_statement.suspension_lifted"],
    },
];
