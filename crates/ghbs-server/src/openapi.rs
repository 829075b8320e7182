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

/// The document as served and committed (pretty JSON, trailing newline).
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::notify::NotifyDoc::openapi());
    let mut s = doc
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    s.push('\n');
    s
}
