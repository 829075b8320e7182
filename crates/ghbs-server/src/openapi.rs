//! The OpenAPI document, generated from the handlers and wire types. The committed copy lives in
//! `docs/openapi.json`; a test fails when the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{audit, health, jobs, login, runs, snapshots, verify};

#[derive(OpenApi)]
#[openapi(
    info(title = "github-backup-scheduler", description = "Scheduled, versioned backups of GitHub repositories."),
    paths(
        login::login, login::logout, login::me, login::list_keys, login::create_key_route, login::revoke_key,
        jobs::create, jobs::list, jobs::show, jobs::update, jobs::pause, jobs::resume, jobs::forget_repo, jobs::delete,
        runs::run_now, runs::list, runs::show,
        snapshots::list, snapshots::show, snapshots::download,
        audit::list,
        health::healthz, health::readyz,
        verify::verify,
    ),
    components(schemas(
        ghbs_wire::ErrorBody, ghbs_wire::LoginRequest, ghbs_wire::LoginResponse, ghbs_wire::User,
        ghbs_wire::ApiKey, ghbs_wire::ApiKeyList, ghbs_wire::Retention, ghbs_wire::JobOptions,
        ghbs_wire::JobCreate, ghbs_wire::JobUpdate, ghbs_wire::JobState, ghbs_wire::TargetKind,
        ghbs_wire::Job, ghbs_wire::JobList, ghbs_wire::RunStatus, ghbs_wire::RunTrigger, ghbs_wire::Run,
        ghbs_wire::RunList, ghbs_wire::CaptureState, ghbs_wire::SnapshotRepo, ghbs_wire::Snapshot, ghbs_wire::SnapshotList,
        ghbs_wire::DownloadFormat, ghbs_wire::Health, ghbs_wire::ForgetRepo, ghbs_wire::RepoForgotten,
        ghbs_wire::KeyCreate, ghbs_wire::KeyCreated, ghbs_wire::AuditEntry, ghbs_wire::AuditList,
    )),
    modifiers(&BearerKey)
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Answers every route can give that its handler does not name: the authentication layer's 401,
/// 403 (read-only key on a write) and 429 (failed-authentication limit), 404 for a path with an
/// id, and the JSON body extractor's 413, 415 and 422. Documented once here, so that a handler
/// cannot forget them; each carries the error body.
struct SharedErrors;

impl Modify for SharedErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.head, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (op, writes) in ops {
                let Some(op) = op.as_mut() else { continue };
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(description).into());
                };
                let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
                if authenticated {
                    add("401", "no API key, or an unknown, revoked or expired one");
                    add("429", "too many failed authentications from this address");
                    if writes {
                        add(
                            "403",
                            "a read-only API key on a route that changes something",
                        );
                    }
                }
                if path.contains("{id}") {
                    add("404", "no such resource for this user");
                }
                if op.request_body.is_some() {
                    add("413", "request body too large");
                    add("415", "request body is not application/json");
                    add("422", "request body is not the expected JSON");
                }
            }
        }
    }
}

/// The document as served and committed (pretty JSON, trailing newline).
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::notify::NotifyDoc::openapi());
    // After the merge, so that every route's shared answers are named.
    SharedErrors.modify(&mut doc);
    let mut s = doc
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    s.push('\n');
    s
}
