-- An example ecosystem directory, in the shape of an open-finance participant
-- directory, with walhook routes that produce its "general to event" payloads.
-- Load after `walhook migrate`:  psql -v ON_ERROR_STOP=1 -f sql/examples/directory.sql
-- Used by `walhook dev`, the tests and the benchmark.

CREATE SCHEMA IF NOT EXISTS directory;

-- Every row carries a revision that grows with each change, directory-wide.
CREATE SEQUENCE IF NOT EXISTS directory.revision_seq START 1084480;

CREATE OR REPLACE FUNCTION directory.bump_revision() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('directory.revision_seq');
    RETURN NEW;
END
$$;

CREATE TABLE IF NOT EXISTS directory.organisations (
    organisation_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    status                 text NOT NULL DEFAULT 'active',
    organisation_name      text NOT NULL,
    created_on             timestamptz NOT NULL DEFAULT now(),
    legal_entity_name      text,
    country_of_registration text,
    company_register       text,
    size                   text,
    registration_number    text,
    registered_name        text,
    address_line1          text,
    city                   text,
    postcode               text,
    country                text,
    requires_participant_terms_and_conditions_signing boolean NOT NULL DEFAULT false,
    logo_uri               text,
    flags                  jsonb NOT NULL DEFAULT '[]',
    revision               bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS directory.authorisation_servers (
    authorisation_server_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id        uuid NOT NULL REFERENCES directory.organisations,
    status                 text NOT NULL DEFAULT 'active',
    auto_registration_notification_webhook text,
    auto_registration_supported boolean NOT NULL DEFAULT false,
    created_at             timestamptz NOT NULL DEFAULT now(),
    customer_friendly_description text,
    customer_friendly_logo_uri text,
    customer_friendly_name text,
    developer_portal_uri   text,
    issuer                 text,
    openid_discovery_document text,
    supports_ciba          boolean NOT NULL DEFAULT false,
    supports_dcr           boolean NOT NULL DEFAULT false,
    supports_redirect      boolean NOT NULL DEFAULT false,
    terms_of_service_uri   text,
    flags                  jsonb NOT NULL DEFAULT '[]',
    revision               bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS directory.software_statements (
    software_statement_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id        uuid NOT NULL REFERENCES directory.organisations,
    status                 text NOT NULL DEFAULT 'active',
    client_id              text,
    client_name            text,
    description            text,
    environment            text,
    mode                   text,
    rts_client_created     boolean NOT NULL DEFAULT false,
    policy_uri             text,
    client_uri             text,
    logo_uri               text,
    redirect_uri           text[] NOT NULL DEFAULT '{}',
    terms_of_service_uri   text,
    version                numeric,
    locked                 boolean NOT NULL DEFAULT false,
    update_failed          boolean NOT NULL DEFAULT false,
    additional_software_metadata text,
    openid_federation_enabled boolean NOT NULL DEFAULT false,
    require_signed_request_object boolean NOT NULL DEFAULT false,
    id_token_signed_response_algorithm text,
    token_endpoint_auth_method text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    tls_client_certificate_bound_access_tokens boolean NOT NULL DEFAULT false,
    client_secret          text,
    revision               bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS directory.certificates (
    certificate_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    software_statement_id  uuid NOT NULL REFERENCES directory.software_statements,
    organisation_id        uuid NOT NULL REFERENCES directory.organisations,
    certificate_type       text NOT NULL DEFAULT 'transport',
    status                 text NOT NULL DEFAULT 'active',
    kid                    text,
    not_after              timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    revision               bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS directory.roles (
    role_id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id        uuid NOT NULL REFERENCES directory.organisations,
    role                   text NOT NULL,
    status                 text NOT NULL DEFAULT 'active',
    registration_id        text,
    revision               bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS directory.role_assignments (
    assignment_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id        uuid NOT NULL REFERENCES directory.organisations,
    user_email             text NOT NULL,
    role                   text NOT NULL,
    status                 text NOT NULL DEFAULT 'active',
    revision               bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS directory.contacts (
    contact_id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id        uuid NOT NULL REFERENCES directory.organisations,
    contact_type           text NOT NULL,
    first_name             text,
    last_name              text,
    email                  text,
    phone                  text,
    revision               bigint NOT NULL DEFAULT 0
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['organisations', 'authorisation_servers', 'software_statements',
                             'certificates', 'roles', 'role_assignments', 'contacts'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS bump_revision ON directory.%I', t);
        EXECUTE format('CREATE TRIGGER bump_revision BEFORE INSERT OR UPDATE ON directory.%I
                        FOR EACH ROW EXECUTE FUNCTION directory.bump_revision()', t);
    END LOOP;
END
$$;

-- Routes ------------------------------------------------------------------

INSERT INTO walhook.routes (source_table, resource, apiresource, payload, revision_column,
                            status_column, status_events, exclude_columns)
VALUES
('directory.organisations', 'organisation',
 '/organisations/{organisation_id}',
 '{"organisationdetails": {
     "organisationid": "{organisation_id}", "status": "{status}",
     "organisationname": "{organisation_name}", "createdon": "{created_on}",
     "legalentityname": "{legal_entity_name}", "countryofregistration": "{country_of_registration}",
     "companyregister": "{company_register}", "size": "{size}",
     "registrationnumber": "{registration_number}", "registeredname": "{registered_name}",
     "addressline1": "{address_line1}", "city": "{city}", "postcode": "{postcode}",
     "country": "{country}",
     "requiresparticipanttermsandconditionssigning": "{requires_participant_terms_and_conditions_signing}",
     "logouri": "{logo_uri}", "flags": "{flags}", "revision": "{revision}"}}',
 'revision', 'status',
 '{"suspended": "suspended", "suspended->active": "suspension_lifted", "withdrawn": "withdrawn"}', '{}'),

('directory.authorisation_servers', 'authorisation_server',
 '/organisations/{organisation_id}/authorisationservers/{authorisation_server_id}',
 '{"organisationdetails": {"organisationid": "{organisation_id}"},
   "authorisationservers": [{
     "status": "{status}", "authorisationserverid": "{authorisation_server_id}",
     "autoregistrationnotificationwebhook": "{auto_registration_notification_webhook}",
     "autoregistrationsupported": "{auto_registration_supported}", "createdat": "{created_at}",
     "customerfriendlydescription": "{customer_friendly_description}",
     "customerfriendlylogouri": "{customer_friendly_logo_uri}",
     "customerfriendlyname": "{customer_friendly_name}", "developerportaluri": "{developer_portal_uri}",
     "issuer": "{issuer}", "openiddiscoverydocument": "{openid_discovery_document}",
     "organisationid": "{organisation_id}", "supportsciba": "{supports_ciba}",
     "supportsdcr": "{supports_dcr}", "supportsredirect": "{supports_redirect}",
     "termsofserviceuri": "{terms_of_service_uri}", "flags": "{flags}", "revision": "{revision}"}]}',
 'revision', 'status', '{"inactive": "deactivated", "inactive->active": "activated"}', '{}'),

('directory.software_statements', 'software_statement',
 '/organisations/{organisation_id}/softwarestatements/{software_statement_id}',
 '{"organisationdetails": {"organisationid": "{organisation_id}"},
   "softwarestatements": {"{software_statement_id}": {"softwaredetails": {
     "status": "{status}", "clientid": "{client_id}", "clientname": "{client_name}",
     "description": "{description}", "environment": "{environment}",
     "organisationid": "{organisation_id}", "softwarestatementid": "{software_statement_id}",
     "mode": "{mode}", "rtsclientcreated": "{rts_client_created}", "policyuri": "{policy_uri}",
     "clienturi": "{client_uri}", "logouri": "{logo_uri}", "redirecturi": "{redirect_uri}",
     "termsofserviceuri": "{terms_of_service_uri}", "version": "{version}", "locked": "{locked}",
     "updatefailed": "{update_failed}", "additionalsoftwaremetadata": "{additional_software_metadata}",
     "openidfederationenabled": "{openid_federation_enabled}",
     "requiresignedrequestobject": "{require_signed_request_object}",
     "idtokensignedresponsealgorithm": "{id_token_signed_response_algorithm}",
     "tokenendpointauthmethod": "{token_endpoint_auth_method}", "createdat": "{created_at}",
     "tlsclientcertificateboundaccesstokens": "{tls_client_certificate_bound_access_tokens}",
     "revision": "{revision}"}}}}',
 'revision', 'status',
 '{"suspended": "suspended", "blocked": "blocked", "suspended->active": "suspension_lifted", "blocked->active": "unblocked"}',
 '{client_secret}'),

('directory.certificates', 'certificate',
 '/organisations/{organisation_id}/softwarestatements/{software_statement_id}/certificates/{certificate_id}',
 '{"organisationdetails": {"organisationid": "{organisation_id}"},
   "softwarestatements": {"{software_statement_id}": {"certificates": {"{certificate_id}": "{*}"}}}}',
 'revision', 'status',
 '{"disabled": "disabled", "revoked": "revoked", "disabled->active": "enabled"}', '{}'),

('directory.roles', 'role', '/organisations/{organisation_id}/roles/{role_id}',
 '{"organisationdetails": {"organisationid": "{organisation_id}"}, "roles": ["{*}"]}',
 'revision', 'status', '{"inactive": "deactivated"}', '{}'),

('directory.role_assignments', 'role_assignment',
 '/organisations/{organisation_id}/roleassignments/{assignment_id}',
 '{"organisationdetails": {"organisationid": "{organisation_id}"}, "roleassignment": "{*}"}',
 'revision', 'status', '{"revoked": "revoked"}', '{}'),

('directory.contacts', 'contact', '/organisations/{organisation_id}/contacts/{contact_id}',
 '{"organisationdetails": {"organisationid": "{organisation_id}"}, "contacts": ["{*}"]}',
 'revision', NULL, NULL, '{}')
ON CONFLICT (source_table) DO UPDATE
   SET resource = EXCLUDED.resource, apiresource = EXCLUDED.apiresource,
       payload = EXCLUDED.payload, revision_column = EXCLUDED.revision_column,
       status_column = EXCLUDED.status_column, status_events = EXCLUDED.status_events,
       exclude_columns = EXCLUDED.exclude_columns;

-- The suspension cascade, by hand (four events: one software_statement.suspended,
-- three certificate.disabled, all with one updatetimestamp):
--
--   BEGIN;
--   UPDATE directory.software_statements SET status = 'suspended' WHERE software_statement_id = '...';
--   UPDATE directory.certificates SET status = 'disabled' WHERE software_statement_id = '...';
--   COMMIT;
