//! The mapping editor: the source's YAML with its problems at their line and column (compiled
//! by the server with `fxhook check`'s compiler, examples included), a recent stored event or
//! a pasted payload run through the edited rules, and the card as the phone shows it. Save
//! writes the file only if it compiles and nobody saved it since it was opened (an ETag of
//! its bytes), keeps the previous version in `.backup/` beside it, and reloads the mappings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::views::{self, Frame, Nav};
use super::{Console, require_csrf};
use crate::card::Locale;
use crate::diagnostic::{Diagnostic, Severity};
use crate::pipeline::{self, Routed};
use crate::reload::Catalog;
use crate::source::Source;
use crate::verify::{self, Payload, Verified};

/// How many recent events the picker offers.
const RECENT: i64 = 20;

/// The largest file the editor takes (a mapping file is a few kilobytes).
const MAX_TEXT: usize = 1024 * 1024;

/// The file of source `name`: the loaded one's, else `<dir>/<name>.yaml` (or `.yml`).
fn file_of(catalog: &Catalog, name: &str) -> Option<PathBuf> {
    if let Some(source) = catalog.load().get(name) {
        return Some(source.file.clone());
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    ["yaml", "yml"]
        .iter()
        .map(|ext| catalog.dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// The ETag of a file's bytes.
fn etag(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A problem as the script shows it.
fn problem_json(d: &Diagnostic) -> Value {
    json!({
        "line": d.line,
        "col": d.col,
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "message": d.message,
    })
}

/// What the edited rules make of one payload.
enum Trial {
    /// No payload to try (the source has no stored event yet and none was pasted).
    Nothing,
    /// The payload could not be read.
    BadPayload(String),
    /// The file does not compile: no card.
    NotCompiled,
    /// Map and route ran.
    Ran(Routed),
}

fn trial_markup(lang: Locale, trial: &Trial) -> Markup {
    let t = |k| super::text::t(lang, k);
    match trial {
        Trial::Nothing => html! { p.hint { (t("no_event")) } },
        Trial::BadPayload(e) => html! { p.notice.error { (t("bad_payload")) ": " (e) } },
        Trial::NotCompiled => html! { p.notice.error { (t("fix_first")) } },
        Trial::Ran(Routed::Ignored { reason }) => html! {
            p.outcome { span.badge.warn { (t("ignored")) } " " (reason) }
        },
        Trial::Ran(Routed::Failed { rule, reason }) => html! {
            p.outcome { span.badge.bad { (t("failed")) } " " (t("rule")) " " code { (rule) } ": " (reason) }
        },
        Trial::Ran(Routed::Rendered { rule, messages, .. }) => html! {
            p.outcome { span.badge.ok { (t("rendered")) } " " (t("rule")) " " code { (rule) } }
            @if let Some(first) = messages.first() {
                (views::phone(lang, &first.composite))
                details.body {
                    summary { (t("send_body")) }
                    pre.json { (views::pretty(&json!(messages))) }
                }
            }
        },
    }
}

/// Headers typed one a line as `Name: value`.
fn parse_headers(text: &str) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {}: expected Name: value", n + 1))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("header line {}: bad name {:?}", n + 1, name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("header line {}: bad value", n + 1))?;
        map.append(name, value);
    }
    Ok(map)
}

/// What to try the rules on: a pasted payload, else a stored event, else the newest one.
#[derive(Debug, Default, Deserialize)]
pub struct TryWith {
    /// A stored event's id.
    #[serde(default)]
    event: Option<String>,
    /// A pasted payload (JSON, or a form body when the headers say so).
    #[serde(default)]
    payload: Option<String>,
    /// Pasted headers, `Name: value` a line.
    #[serde(default)]
    headers: Option<String>,
}

async fn payload_for(
    console: &Console,
    source: &str,
    with: &TryWith,
) -> Result<Option<Verified<Payload>>, String> {
    if let Some(body) = with.payload.as_deref().filter(|p| !p.trim().is_empty()) {
        let headers = parse_headers(with.headers.as_deref().unwrap_or(""))?;
        return verify::offline::trust_admin_supplied(
            headers,
            bytes::Bytes::from(body.to_string()),
            SystemTime::now(),
        )
        .map(Some)
        .map_err(|e| e.to_string());
    }
    let wanted = with.event.clone().filter(|e| !e.is_empty());
    let source = source.to_string();
    let stored = console
        .admin
        .store(move |s| match wanted {
            Some(id) => s.stored_event(&id),
            None => match s
                .events_of(&source, 1)?
                .first()
                .and_then(|e| e["id"].as_str())
            {
                Some(id) => s.stored_event(id),
                None => Ok(None),
            },
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    if stored.payload.is_empty() {
        return Err("its payload was dropped after delivery.keep_payloads".into());
    }
    verify::offline::trust_stored(
        super::super::stored_headers(&stored.headers),
        bytes::Bytes::from(stored.payload),
        crate::store::from_unix_ms(stored.received_at),
    )
    .map(Some)
    .map_err(|e| e.to_string())
}

/// Compiles `text` as the file of `name` would be, its examples run as `fxhook check` runs
/// them (a mismatch is a warning here, as at reload: it does not block a save).
fn compile(catalog: &Catalog, file: &Path, text: &str) -> (Option<Source>, Vec<Diagnostic>) {
    crate::source::compile_text(file, text, &catalog.groups, &catalog.options)
}

async fn trial(
    console: &Console,
    catalog: &Catalog,
    name: &str,
    source: Option<&Source>,
    with: &TryWith,
) -> Trial {
    let Some(source) = source else {
        return Trial::NotCompiled;
    };
    match payload_for(console, name, with).await {
        Err(e) => Trial::BadPayload(e),
        Ok(None) => Trial::Nothing,
        Ok(Some(payload)) => Trial::Ran(pipeline::render(
            &source.mapping,
            &payload,
            &catalog.groups,
            catalog.options.tz,
        )),
    }
}

/// `GET /admin/ui/sources/{name}`: the editor, opened with the newest event previewed.
pub async fn page(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
    name: web::Path<String>,
) -> HttpResponse {
    let Some(frame) = Frame::of(&console, &req, Nav::Sources) else {
        return super::see_other(&console.url("/sign-in"));
    };
    let name = name.into_inner();
    let Some(file) = file_of(&catalog, &name) else {
        let content = html! { h1 { (name) } p.notice.error { (frame.t("no_source")) } };
        return frame.page(StatusCode::NOT_FOUND, &name, content);
    };
    let bytes = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(e) => {
            let content = html! { h1 { (name) } p.notice.error { (file.display()) ": " (e) } };
            return frame.page(StatusCode::INTERNAL_SERVER_ERROR, &name, content);
        }
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (compiled, problems) = compile(&catalog, &file, &text);
    let tried = trial(
        &console,
        &catalog,
        &name,
        compiled.as_ref(),
        &TryWith::default(),
    )
    .await;
    let events = {
        let source = name.clone();
        console
            .admin
            .store(move |s| s.events_of(&source, RECENT))
            .await
            .unwrap_or_default()
    };
    let tz = catalog.options.tz;
    let base = console.url(&format!("/sources/{name}"));
    let problems_json = Value::Array(problems.iter().map(problem_json).collect()).to_string();
    let content = html! {
        h1 { (frame.t("mapping")) ": " (name) " " small.path { (file.display()) } }
        div.editor-grid
            data-check=(format!("{base}/check"))
            data-save=(format!("{base}/save"))
            data-etag=(etag(&bytes))
            data-problems=(problems_json)
            data-t-unchanged=(frame.t("unchanged"))
            data-t-saving=(frame.t("saving"))
            data-t-checking=(frame.t("checking"))
            data-t-no-problems=(frame.t("no_problems")) {
            section.edit {
                div.editor {
                    pre.gutter aria-hidden="true" {}
                    textarea #yaml name="text" spellcheck="false" autocapitalize="off" autocomplete="off" wrap="off" aria-label=(frame.t("mapping")) { (text) }
                }
                h2 { (frame.t("problems")) }
                ul #problems.problems aria-live="polite" {
                    @if problems.is_empty() { li.ok { (frame.t("no_problems")) } }
                    @for d in &problems {
                        li.(if d.severity == Severity::Error { "error" } else { "warning" }) data-line=(d.line) data-col=(d.col) {
                            code { (d.line) ":" (d.col) } " " (d.message)
                        }
                    }
                }
                div.actions {
                    button #review type="button" { (frame.t("review_save")) }
                    span #save-status role="status" {}
                }
                div #review-panel hidden {
                    h2 { (frame.t("diff")) }
                    pre #diff.diff {}
                    button #confirm-save type="button" { (frame.t("save")) }
                    " "
                    button #cancel-save.secondary type="button" { (frame.t("cancel")) }
                }
                form #download-form method="post" action=(format!("{base}/download")) hidden {
                    (frame.csrf_field())
                    textarea name="text" {}
                    button type="submit" { (frame.t("download")) }
                }
            }
            section.try {
                label for="event" { (frame.t("recent_event")) }
                select #event {
                    @for e in &events {
                        @let id = e["id"].as_str().unwrap_or("");
                        option value=(id) {
                            (views::at(e["received_at"].as_i64().unwrap_or(0), tz)) " · "
                            (e["event_type"].as_str().unwrap_or("-")) " · " (e["state"].as_str().unwrap_or(""))
                        }
                    }
                    @if events.is_empty() { option value="" { (frame.t("none")) } }
                }
                details #paste {
                    summary { (frame.t("paste")) }
                    label for="headers" { (frame.t("headers")) }
                    textarea #headers rows="3" spellcheck="false" placeholder="X-GitHub-Event: push" {}
                    label for="payload" { "JSON" }
                    textarea #payload rows="8" spellcheck="false" placeholder="{ … }" {}
                    button #try type="button" { (frame.t("try")) }
                }
                div #result aria-live="polite" { (trial_markup(frame.lang, &tried)) }
            }
        }
    };
    frame.page(StatusCode::OK, &name, content)
}

/// The door of the editor's JSON requests: the session's CSRF token first (a forged request
/// learns nothing), then the body, the source's file and the text's size.
fn editor_request<T: serde::de::DeserializeOwned>(
    console: &Console,
    req: &HttpRequest,
    catalog: &Catalog,
    name: &str,
    body: &[u8],
    text: fn(&T) -> &String,
) -> Result<(T, PathBuf), Box<HttpResponse>> {
    require_csrf(console, req, None)?;
    let refuse = |res: HttpResponse| Box::new(res);
    let body: T = serde_json::from_slice(body).map_err(|e| {
        refuse(HttpResponse::BadRequest().json(json!({"error": format!("malformed JSON: {e}")})))
    })?;
    let file = file_of(catalog, name).ok_or_else(|| {
        refuse(HttpResponse::NotFound().json(json!({"error": format!("no source {name}")})))
    })?;
    if text(&body).len() > MAX_TEXT {
        return Err(refuse(
            HttpResponse::PayloadTooLarge().json(json!({"error": "the file is over 1 MiB"})),
        ));
    }
    Ok((body, file))
}

/// [`compile`] off the async threads (it reads the examples' payloads).
async fn compile_off_thread(
    catalog: &web::Data<Catalog>,
    file: &Path,
    text: &str,
) -> Result<(Option<Source>, Vec<Diagnostic>), Box<HttpResponse>> {
    let (catalog, file, text) = (catalog.clone(), file.to_path_buf(), text.to_string());
    web::block(move || compile(&catalog, &file, &text))
        .await
        .map_err(|e| {
            Box::new(
                HttpResponse::InternalServerError()
                    .json(json!({"error": format!("check failed: {e}")})),
            )
        })
}

/// The editor's request: the text, what to try it on.
#[derive(Debug, Deserialize)]
pub struct CheckRequest {
    text: String,
    #[serde(flatten)]
    with: TryWith,
}

/// `POST …/check` (JSON, `X-CSRF-Token`): the text's problems and the card it makes.
pub async fn check(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
    name: web::Path<String>,
    body: bytes::Bytes,
) -> HttpResponse {
    let (body, file) =
        match editor_request::<CheckRequest>(&console, &req, &catalog, &name, &body, |b| &b.text) {
            Ok(parts) => parts,
            Err(refused) => return *refused,
        };
    let lang = console.lang(&req);
    let (compiled, problems) = match compile_off_thread(&catalog, &file, &body.text).await {
        Ok(done) => done,
        Err(refused) => return *refused,
    };
    let tried = trial(&console, &catalog, &name, compiled.as_ref(), &body.with).await;
    HttpResponse::Ok().json(json!({
        "problems": problems.iter().map(problem_json).collect::<Vec<_>>(),
        "result": trial_markup(lang, &tried).into_string(),
    }))
}

/// The save request: the text, the ETag it was edited from, and whether the diff was seen.
#[derive(Debug, Deserialize)]
pub struct SaveRequest {
    text: String,
    etag: String,
    #[serde(default)]
    confirm: bool,
}

/// One save at a time in this process (two admins' saves are ordered, and the second sees the
/// first's ETag).
static SAVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `POST …/save` (JSON, `X-CSRF-Token`): without `confirm`, the diff to review; with it, the
/// file written and the mappings reloaded. `422` with the problems when it does not compile,
/// `409` when the file changed since `etag` (or the folder is read-only: `read_only: true`).
pub async fn save(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
    name: web::Path<String>,
    body: bytes::Bytes,
) -> HttpResponse {
    let (body, file) =
        match editor_request::<SaveRequest>(&console, &req, &catalog, &name, &body, |b| &b.text) {
            Ok(parts) => parts,
            Err(refused) => return *refused,
        };
    let lang = console.lang(&req);
    let t = |k| super::text::t(lang, k);
    let _one_at_a_time = SAVING.lock().await;
    let problems = match compile_off_thread(&catalog, &file, &body.text).await {
        Ok((Some(_), problems)) => problems,
        Ok((None, problems)) => {
            return HttpResponse::UnprocessableEntity().json(json!({
                "error": t("not_saved"),
                "problems": problems.iter().map(problem_json).collect::<Vec<_>>(),
            }));
        }
        Err(refused) => return *refused,
    };
    let current = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(e) => {
            return HttpResponse::InternalServerError()
                .json(json!({"error": format!("{}: {e}", file.display())}));
        }
    };
    if etag(&current) != body.etag.trim() {
        return HttpResponse::Conflict().json(json!({"error": t("conflict"), "conflict": true}));
    }
    let before = String::from_utf8_lossy(&current).into_owned();
    if !body.confirm {
        let diff = similar::TextDiff::from_lines(&before, &body.text)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{name} (saved)"), &format!("{name} (yours)"))
            .to_string();
        return HttpResponse::Ok().json(json!({
            "diff": diff,
            "unchanged": before == body.text,
            "warnings": problems.iter().map(problem_json).collect::<Vec<_>>(),
        }));
    }
    let (target, text) = (file.clone(), body.text.clone());
    match web::block(move || write_with_backup(&target, &current, &text)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if is_read_only(&e) => {
            tracing::warn!(file = %file.display(), error = %e, "console save refused: the mappings folder is read-only");
            return HttpResponse::Conflict()
                .json(json!({"error": t("read_only"), "read_only": true}));
        }
        Ok(Err(e)) => {
            return HttpResponse::InternalServerError()
                .json(json!({"error": format!("{}: {e}", file.display())}));
        }
        Err(e) => {
            return HttpResponse::InternalServerError()
                .json(json!({"error": format!("save failed: {e}")}));
        }
    }
    tracing::info!(source = %name, file = %file.display(), "mapping saved from the console");
    // The watcher would reload too (when on); reloading here makes the answer true at once.
    let reloader = Arc::clone(&catalog.clone().into_inner());
    let report = web::block(move || reloader.reload()).await;
    let errors = match report {
        Ok(Ok(r)) => r.errors,
        Ok(Err(e)) => vec![format!("{e:#}")],
        Err(e) => vec![e.to_string()],
    };
    HttpResponse::Ok().json(json!({
        "saved": true,
        "message": t("saved"),
        "etag": etag(body.text.as_bytes()),
        "reload_errors": errors,
    }))
}

fn is_read_only(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Keeps `previous` as `.backup/<file>.<UTC time>` beside `file`, then replaces `file` by
/// rename (a reader sees the old or the new file, never half of one), with its permissions.
fn write_with_backup(file: &Path, previous: &[u8], text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = file.parent().unwrap_or(Path::new("."));
    let file_name = file
        .file_name()
        .map_or_else(|| "mapping".into(), |n| n.to_string_lossy().into_owned());
    let backups = dir.join(".backup");
    std::fs::create_dir_all(&backups)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    std::fs::write(backups.join(format!("{file_name}.{stamp}")), previous)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".fxhook-save-")
        .tempfile_in(dir)?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(file) {
        temp.as_file().set_permissions(meta.permissions())?;
    }
    temp.persist(file).map_err(|e| e.error)?;
    // The rename is done: a folder that cannot be synced (some file systems refuse) does not
    // undo the save.
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "the mappings folder was not synced after a save");
    }
    Ok(())
}

/// The download form: the text a read-only folder could not take.
#[derive(Debug, Deserialize)]
pub struct DownloadForm {
    csrf: Option<String>,
    text: String,
}

/// `POST …/download`: the edited text as a file, for a folder the console cannot write.
pub async fn download(
    req: HttpRequest,
    console: web::Data<Console>,
    catalog: web::Data<Catalog>,
    name: web::Path<String>,
    form: web::Form<DownloadForm>,
) -> HttpResponse {
    if let Err(refused) = require_csrf(&console, &req, form.csrf.as_deref()) {
        return *refused;
    }
    let file_name = file_of(&catalog, &name)
        .and_then(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{name}.yaml"));
    HttpResponse::Ok()
        .content_type("application/yaml; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", file_name.replace('"', "")),
        ))
        .body(form.text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_headers_are_read_one_a_line_and_a_bad_line_is_named() {
        let h = parse_headers("X-GitHub-Event: push\n\nContent-Type: application/json\n").unwrap();
        assert_eq!(h.get("x-github-event").unwrap(), "push");
        assert_eq!(
            parse_headers("no colon here").unwrap_err(),
            "header line 1: expected Name: value"
        );
    }

    #[test]
    fn a_save_keeps_the_previous_version_and_the_files_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("github.yaml");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_with_backup(&file, b"old", "new").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let backups: Vec<_> = std::fs::read_dir(dir.path().join(".backup"))
            .unwrap()
            .collect();
        assert_eq!(backups.len(), 1);
        let backup = backups[0].as_ref().unwrap().path();
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "old");
        assert!(
            backup
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("github.yaml.")
        );
    }
}
