//! The built-in mappings of the Git hosts — GitHub, GitLab, Gitea/Forgejo and Bitbucket (Cloud and
//! Data Center) — on the real payloads of `tests/fixtures/<sender>/` (each directory's README names
//! every payload's source): the cards an engineer reads on a phone, the events deliberately not
//! sent, and the same kind of event reading the same way whichever host sent it.

use fxhook::card::Composite;
use fxhook::pipeline::Routed;
use fxhook::route::Groups;
use fxhook::source::Source;
use serde_json::Value;

use crate::cards::{assert_valid_composite, groups, load, map};
use crate::helpers::repo_file;

/// One built-in mapping, loaded with a filled `default` group.
pub(crate) struct Sender {
    source: Source,
    groups: Groups,
    /// The header that names the event.
    event_header: &'static str,
    /// The fixture directory under `tests/fixtures/`.
    dir: &'static str,
}

impl Sender {
    pub(crate) fn new(file: &str, event_header: &'static str, dir: &'static str) -> Sender {
        let groups = groups(&[("default", &["1000", "1001"])]);
        let source = load(&repo_file(&format!("mappings/{file}")), &groups);
        Sender {
            source,
            groups,
            event_header,
            dir,
        }
    }

    pub(crate) fn github() -> Sender {
        Sender::new("github.yaml", "X-GitHub-Event", "github")
    }

    pub(crate) fn gitlab() -> Sender {
        Sender::new("gitlab.yaml", "X-Gitlab-Event", "gitlab")
    }

    pub(crate) fn gitea() -> Sender {
        Sender::new("gitea.yaml", "X-Gitea-Event", "gitea")
    }

    pub(crate) fn bitbucket() -> Sender {
        Sender::new("bitbucket.yaml", "X-Event-Key", "bitbucket")
    }

    /// The fixture as JSON, to derive a variant from.
    pub(crate) fn fixture(&self, file: &str) -> Value {
        let path = repo_file(&format!("tests/fixtures/{}/{file}", self.dir));
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&text).unwrap()
    }

    pub(crate) fn map(&self, event: &str, body: &Value) -> Routed {
        map(
            &self.source,
            &self.groups,
            &[(self.event_header, event)],
            body.to_string().as_bytes(),
        )
    }

    /// The card of a payload that must render: one message to the `default` group, a valid
    /// composite, made by `rule`.
    pub(crate) fn card_of(&self, event: &str, body: &Value, rule: &str) -> Composite {
        match self.map(event, body) {
            Routed::Rendered {
                rule: made_by,
                messages,
                ..
            } => {
                assert_eq!(made_by, rule, "{event} rendered by the wrong rule");
                assert_eq!(messages.len(), 1);
                assert_eq!(messages[0].to_user, vec!["1000", "1001"]);
                assert_valid_composite(&messages[0]);
                messages[0].composite.clone()
            }
            other => panic!("{event}: expected a card from rule {rule}, got {other:?}"),
        }
    }

    pub(crate) fn card(&self, event: &str, file: &str, rule: &str) -> Composite {
        self.card_of(event, &self.fixture(file), rule)
    }

    /// The reason a payload that must be ignored gives.
    pub(crate) fn ignored_of(&self, event: &str, body: &Value) -> String {
        match self.map(event, body) {
            Routed::Ignored { reason } => {
                assert!(
                    !reason.trim().is_empty(),
                    "{event}: ignored without a reason"
                );
                reason
            }
            other => panic!("{event}: expected to be ignored, got {other:?}"),
        }
    }

    pub(crate) fn ignored(&self, event: &str, file: &str) -> String {
        self.ignored_of(event, &self.fixture(file))
    }
}

pub(crate) fn first(card: &Composite) -> &str {
    card.first.as_ref().map_or("", |c| c.content.as_str())
}

pub(crate) fn remark(card: &Composite) -> &str {
    card.remark.as_ref().map_or("", |c| c.content.as_str())
}

pub(crate) fn rows(card: &Composite) -> Vec<(&str, &str)> {
    card.form
        .iter()
        .map(|r| (r.label.as_str(), r.value.as_str()))
        .collect()
}

pub(crate) fn row<'c>(card: &'c Composite, label: &str) -> &'c str {
    card.form
        .iter()
        .find(|r| r.label == label)
        .map(|r| r.value.as_str())
        .unwrap_or_else(|| panic!("no row {label:?} in {:?}", rows(card)))
}

// ---- GitHub ----

#[test]
fn a_github_tag_makes_one_card_from_its_push_and_its_create_event_is_ignored() {
    // GitHub sends both `push` and `create` for a new tag: the push's card tells it, once.
    let github = Sender::github();
    let card = github.card("push", "push.0.json", "push-tag");
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: tag simple-tag pushed"
    );
    assert_eq!(first(&card), "Codertocat pushed refs/tags/simple-tag");
    assert_eq!(row(&card, "Commit"), "6113728 Adding a .gitignore file");
    assert_eq!(card.link.title, "View tag");
    assert_eq!(
        card.link.url,
        "https://github.com/Codertocat/Hello-World/tree/simple-tag"
    );
    let reason = github.ignored("create", "create.0.json");
    assert!(reason.contains("push events"), "{reason}");
}

#[test]
fn a_github_tag_deletion_makes_one_card_from_its_push_and_its_delete_event_is_ignored() {
    let github = Sender::github();
    let pushed = github.card("push", "push.6.json", "push-delete");
    assert_eq!(
        pushed.head.title,
        "Codertocat/Hello-World: tag simple-tag deleted"
    );
    assert_eq!(pushed.link.url, "https://github.com/Codertocat/Hello-World");
    assert_eq!(row(&pushed, "Was at"), "6113728");
    let reason = github.ignored("delete", "delete.0.json");
    assert!(reason.contains("push events"), "{reason}");
}

#[test]
fn a_submitted_github_review_reads_as_a_pull_request_event_and_links_to_the_review() {
    let github = Sender::github();
    let card = github.card(
        "pull_request_review",
        "pull_request_review.submitted.json",
        "pull-request-review",
    );
    assert_eq!(card.head.title, "Codertocat/Hello-World: PR #2 reviewed");
    assert_eq!(first(&card), "Update the README with new information.");
    assert_eq!(row(&card, "Reviewer"), "Codertocat");
    assert_eq!(row(&card, "Branches"), "changes → master");
    assert_eq!(
        card.link.url,
        "https://github.com/Codertocat/Hello-World/pull/2#pullrequestreview-237895671"
    );

    let mut approved = github.fixture("pull_request_review.submitted.json");
    approved["review"]["state"] = "approved".into();
    let card = github.card_of("pull_request_review", &approved, "pull-request-review");
    assert_eq!(card.head.title, "Codertocat/Hello-World: PR #2 approved");

    let reason = github.ignored("pull_request_review", "pull_request_review.dismissed.json");
    assert!(reason.contains("not sent"), "{reason}");
}

#[test]
fn a_github_check_suite_success_is_sent_and_one_of_github_actions_is_not_sent_twice() {
    let github = Sender::github();
    let card = github.card("check_suite", "check_suite.completed.json", "check-suite");
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: octocoders-linter checks passed"
    );
    assert_eq!(first(&card), "Update README.md");
    assert_eq!(row(&card, "Branch"), "changes");
    assert_eq!(row(&card, "Commit"), "ec26c3e");
    assert_eq!(
        card.link.url,
        "https://github.com/Codertocat/Hello-World/commit/ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    );

    let reason = github.ignored("check_suite", "check_suite.completed-2.json");
    assert!(reason.contains("workflow_run"), "{reason}");
}

#[test]
fn a_github_check_suite_failure_is_prominent() {
    let github = Sender::github();
    // The documented success with its conclusion turned to a failure.
    let mut failed = github.fixture("check_suite.completed.json");
    failed["check_suite"]["conclusion"] = "failure".into();
    let card = github.card_of("check_suite", &failed, "check-suite-failed");
    assert_eq!(
        card.head.title,
        "❌ Codertocat/Hello-World: octocoders-linter checks failed"
    );
}

#[test]
fn a_github_workflow_run_failure_is_prominent_and_a_success_is_sent_plainly() {
    let github = Sender::github();
    let passed = github.card(
        "workflow_run",
        "workflow_run.completed.json",
        "workflow-run",
    );
    assert!(
        !passed.head.title.starts_with('❌'),
        "{}",
        passed.head.title
    );
    assert_eq!(passed.link.title, "View run");

    // The same run, as GitHub sends it when its conclusion is a failure.
    let mut failed = github.fixture("workflow_run.completed.json");
    failed["workflow_run"]["conclusion"] = "failure".into();
    let card = github.card_of("workflow_run", &failed, "workflow-run-failed");
    assert!(card.head.title.starts_with("❌ Codertocat/Hello-World: "));
    assert!(card.head.title.contains(" failed") || card.head.title.ends_with('…'));
    assert_eq!(card.link.url, passed.link.url);
}

#[test]
fn a_failed_github_workflow_job_is_prominent_and_links_to_the_job() {
    let github = Sender::github();
    let card = github.card(
        "workflow_job",
        "workflow_job.completed.json",
        "workflow-job-failed",
    );
    assert_eq!(
        card.head.title,
        "❌ Codertocat/Hello-World: job linters failed"
    );
    assert_eq!(first(&card), "CodeQL");
    assert_eq!(row(&card, "Branch"), "main");
    assert_eq!(row(&card, "Commit"), "3484a3f");
    assert_eq!(card.link.title, "View job");
    assert_eq!(
        card.link.url,
        "https://github.com/octo-org/octo-repo/runs/1291536064"
    );

    let reason = github.ignored("workflow_job", "workflow_job.completed-2.json");
    assert!(reason.contains("only failed"), "{reason}");
}

#[test]
fn a_finished_github_deployment_is_sent_and_one_in_progress_is_ignored() {
    let github = Sender::github();
    let card = github.card(
        "deployment_status",
        "deployment_status.created.json",
        "deployment",
    );
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: deployment to production succeeded"
    );
    assert_eq!(row(&card, "Ref"), "master");
    assert_eq!(row(&card, "By"), "Codertocat");
    assert_eq!(card.link.url, "https://github.com/Codertocat/Hello-World");

    let mut failed = github.fixture("deployment_status.created.json");
    failed["deployment_status"]["state"] = "failure".into();
    let card = github.card_of("deployment_status", &failed, "deployment-failed");
    assert_eq!(
        card.head.title,
        "❌ Codertocat/Hello-World: deployment to production failed"
    );

    let reason = github.ignored("deployment_status", "deployment_status.created-2.json");
    assert!(reason.contains("only finished deployments"), "{reason}");
}

#[test]
fn github_stars_watches_and_forks_are_ignored_with_a_reason_saying_how_to_enable_them() {
    let github = Sender::github();
    for (event, file) in [
        ("star", "star.created.json"),
        ("watch", "watch.started.json"),
        ("fork", "fork.0.json"),
    ] {
        let reason = github.ignored(event, file);
        assert!(reason.contains("not sent by default"), "{reason}");
        assert!(reason.contains("to enable"), "{reason}");
    }
}

#[test]
fn a_github_comment_on_a_pull_request_says_pr_and_one_on_an_issue_says_issue() {
    let github = Sender::github();
    let card = github.card(
        "issue_comment",
        "issue_comment.created.json",
        "issue-comment",
    );
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: comment on issue #1"
    );
    assert_eq!(row(&card, "By"), "Codertocat");

    // GitHub marks a pull request's conversation with `issue.pull_request`.
    let mut on_pr = github.fixture("issue_comment.created.json");
    on_pr["issue"]["pull_request"] =
        serde_json::json!({"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"});
    let card = github.card_of("issue_comment", &on_pr, "pull-request-comment");
    assert_eq!(card.head.title, "Codertocat/Hello-World: comment on PR #1");
}

// ---- GitLab ----

#[test]
fn a_gitlab_push_counts_every_commit_and_links_to_the_compare_view() {
    let card = Sender::gitlab().card("Push Hook", "push.json", "push");
    // GitLab lists at most 20 commits; the title tells the real count.
    assert_eq!(card.head.title, "mike/diaspora: 4 commit(s) to master");
    assert_eq!(first(&card), "jsmith pushed to refs/heads/master");
    assert_eq!(
        rows(&card),
        vec![
            ("b6568db", "Update Catalan translation to e38cb41."),
            ("da15608", "fixed readme"),
        ]
    );
    assert_eq!(card.link.title, "View changes");
    assert_eq!(
        card.link.url,
        "http://example.com/mike/diaspora/-/compare/95790bf891e76fee5e1747ab589903a6a1f80f22...da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    );
}

#[test]
fn a_gitlab_branch_deletion_is_a_card_too() {
    let gitlab = Sender::gitlab();
    let mut deleted = gitlab.fixture("push.json");
    deleted["after"] = "0000000000000000000000000000000000000000".into();
    deleted["commits"] = serde_json::json!([]);
    deleted["total_commits_count"] = 0.into();
    let card = gitlab.card_of("Push Hook", &deleted, "push-delete");
    assert_eq!(card.head.title, "mike/diaspora: branch master deleted");
    assert_eq!(row(&card, "Was at"), "95790bf");
    assert_eq!(card.link.url, "http://example.com/mike/diaspora");
}

#[test]
fn a_gitlab_tag_push_reads_as_a_created_tag_and_links_to_it() {
    let card = Sender::gitlab().card("Tag Push Hook", "tag_push.json", "tag");
    assert_eq!(card.head.title, "jsmith/example: tag v1.0.0 created");
    assert_eq!(row(&card, "Commit"), "82b3d5a");
    assert_eq!(
        card.link.url,
        "http://example.com/jsmith/example/-/tags/v1.0.0"
    );
}

#[test]
fn a_gitlab_merge_request_reads_by_its_reference_with_branches_and_reviewers() {
    let gitlab = Sender::gitlab();
    let card = gitlab.card(
        "Merge Request Hook",
        "merge_request.open.json",
        "merge-request",
    );
    assert_eq!(card.head.title, "gitlabhq/gitlab-test: MR !1 opened");
    assert_eq!(first(&card), "MS-Viewport");
    assert_eq!(row(&card, "Branches"), "ms-viewport → master");
    assert_eq!(row(&card, "Reviewers"), "user1");
    assert_eq!(row(&card, "By"), "root");
    assert_eq!(
        card.link.url,
        "http://example.com/diaspora/merge_requests/1"
    );

    // The same merge request as GitLab sends it when it is merged.
    let mut merged = gitlab.fixture("merge_request.open.json");
    merged["object_attributes"]["action"] = "merge".into();
    merged["object_attributes"]["state"] = "merged".into();
    let card = gitlab.card_of("Merge Request Hook", &merged, "merge-request-merged");
    assert_eq!(card.head.title, "gitlabhq/gitlab-test: MR !1 merged");
    assert_eq!(row(&card, "Into"), "master");
    assert_eq!(row(&card, "From"), "ms-viewport");

    let mut updated = gitlab.fixture("merge_request.open.json");
    updated["object_attributes"]["action"] = "update".into();
    let reason = gitlab.ignored_of("Merge Request Hook", &updated);
    assert!(reason.contains("not sent"), "{reason}");
}

#[test]
fn a_gitlab_comment_says_where_it_was_made_and_links_to_it() {
    let gitlab = Sender::gitlab();
    let card = gitlab.card(
        "Note Hook",
        "note.merge_request.json",
        "note-on-merge-request",
    );
    assert_eq!(card.head.title, "gitlab-org/gitlab-test: comment on MR !1");
    assert_eq!(first(&card), "Tempora et eos debitis quae laborum et.");
    assert_eq!(row(&card, "By"), "root");
    assert_eq!(remark(&card), "This MR needs work.");
    assert_eq!(
        card.link.url,
        "http://example.com/gitlab-org/gitlab-test/merge_requests/1#note_1244"
    );

    let card = gitlab.card("Note Hook", "note.issue.json", "note-on-issue");
    assert_eq!(
        card.head.title,
        "gitlab-org/gitlab-test: comment on issue #17"
    );
    assert_eq!(remark(&card), "Hello world");
    assert_eq!(
        card.link.url,
        "http://example.com/gitlab-org/gitlab-test/issues/17#note_1241"
    );
}

#[test]
fn a_gitlab_issue_opened_shows_assignees_and_labels() {
    let card = Sender::gitlab().card("Issue Hook", "issue.open.json", "issue");
    assert_eq!(card.head.title, "gitlabhq/gitlab-test: issue #23 opened");
    assert_eq!(first(&card), "New API: create/update/delete file");
    assert_eq!(row(&card, "Assignees"), "user1");
    assert_eq!(row(&card, "Labels"), "API");
    assert_eq!(
        remark(&card),
        "Create new API for manipulations with repository"
    );
    assert_eq!(card.link.url, "http://example.com/diaspora/issues/23");
}

#[test]
fn a_passed_gitlab_pipeline_is_sent_without_alarm() {
    let card = Sender::gitlab().card("Pipeline Hook", "pipeline.success.json", "pipeline");
    assert_eq!(
        card.head.title,
        "gitlab-org/gitlab-test: pipeline #31 passed"
    );
    assert_eq!(row(&card, "Branch"), "master");
    assert_eq!(row(&card, "Commit"), "bcbb5ec");
    assert_eq!(
        card.link.url,
        "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31"
    );
}

#[test]
fn a_gitlab_pipeline_failure_is_prominent_and_links_to_the_pipeline() {
    let gitlab = Sender::gitlab();
    // The documented pipeline as GitLab sends it once its failed job fails it.
    let mut failed = gitlab.fixture("pipeline.success.json");
    failed["object_attributes"]["status"] = "failed".into();
    let card = gitlab.card_of("Pipeline Hook", &failed, "pipeline-failed");
    assert_eq!(
        card.head.title,
        "❌ gitlab-org/gitlab-test: pipeline #31 failed"
    );
    assert_eq!(first(&card), "test");
    assert_eq!(row(&card, "Branch"), "master");
    assert_eq!(row(&card, "Failed jobs"), "test-build");
    assert_eq!(row(&card, "By"), "root");
    assert_eq!(card.link.title, "View pipeline");
    assert_eq!(
        card.link.url,
        "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31"
    );

    let mut running = gitlab.fixture("pipeline.success.json");
    running["object_attributes"]["status"] = "running".into();
    let reason = gitlab.ignored_of("Pipeline Hook", &running);
    assert!(reason.contains("only finished pipelines"), "{reason}");
}

#[test]
fn a_gitlab_job_failure_is_prominent_and_other_job_states_are_ignored() {
    let gitlab = Sender::gitlab();
    let reason = gitlab.ignored("Job Hook", "job.json");
    assert!(reason.contains("only failed jobs"), "{reason}");

    // The documented job (it already carries its failure reason) once it has failed.
    let mut failed = gitlab.fixture("job.json");
    failed["build_status"] = "failed".into();
    let card = gitlab.card_of("Job Hook", &failed, "job-failed");
    assert_eq!(
        card.head.title,
        "❌ gitlab-org/gitlab-test: job test failed"
    );
    assert_eq!(row(&card, "Stage"), "test");
    assert_eq!(row(&card, "Branch"), "gitlab-script-trigger");
    assert_eq!(row(&card, "Reason"), "script failure");
    assert_eq!(row(&card, "Pipeline"), "#2366");
    assert_eq!(row(&card, "By"), "User");
    assert_eq!(
        card.link.url,
        "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/1977"
    );

    failed["build_allow_failure"] = true.into();
    let reason = gitlab.ignored_of("Job Hook", &failed);
    assert!(reason.contains("allowed to fail"), "{reason}");
}

#[test]
fn a_gitlab_release_reads_as_published_and_links_to_it() {
    let card = Sender::gitlab().card("Release Hook", "release.create.json", "release");
    assert_eq!(
        card.head.title,
        "gitlab-org/release-webhook-example: release v1.1 published"
    );
    assert_eq!(row(&card, "Tag"), "v1.1");
    assert_eq!(remark(&card), "v1.1 has been released");
    assert_eq!(
        card.link.url,
        "https://example.com/gitlab-org/release-webhook-example/-/releases/v1.1"
    );
}

#[test]
fn gitlab_events_not_mapped_and_confidential_ones_are_ignored_with_a_reason() {
    let gitlab = Sender::gitlab();
    let reason = gitlab.ignored("Wiki Page Hook", "push.json");
    assert!(reason.contains("not mapped"), "{reason}");
    let reason = gitlab.ignored("Confidential Issue Hook", "issue.open.json");
    assert!(reason.contains("confidential"), "{reason}");
    let reason = gitlab.ignored("Confidential Note Hook", "note.issue.json");
    assert!(reason.contains("confidential"), "{reason}");
}

// ---- Gitea / Forgejo ----

#[test]
fn a_gitea_push_lists_each_commit_and_links_to_the_compare_view() {
    let card = Sender::gitea().card("push", "push.json", "push");
    assert_eq!(card.head.title, "gitea/webhooks: 1 commit(s) to develop");
    assert_eq!(first(&card), "gitea pushed to refs/heads/develop");
    assert_eq!(rows(&card), vec![("bffeb74", "Webhooks Yay!")]);
    assert_eq!(
        card.link.url,
        "http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a"
    );
}

#[test]
fn a_gitea_pull_request_merged_names_both_branches_and_who_merged() {
    let card = Sender::gitea().card(
        "pull_request",
        "pull_request.merged.json",
        "pull-request-merged",
    );
    assert_eq!(card.head.title, "anbraten/test-repo: PR #1 merged");
    assert_eq!(first(&card), "Adjust file");
    assert_eq!(row(&card, "Into"), "main");
    assert_eq!(row(&card, "From"), "anbraten-patch-1");
    assert_eq!(row(&card, "Merged by"), "anbraten");
    assert_eq!(
        card.link.url,
        "https://gitea.com/anbraten/test-repo/pulls/1"
    );
}

#[test]
fn a_forgejo_pull_request_reopened_renders_with_the_gitea_file_and_with_the_forgejo_preset() {
    let gitea = Sender::gitea();
    let card = gitea.card("pull_request", "pull_request.reopened.json", "pull-request");
    assert_eq!(card.head.title, "test_it/test_ci_thing: PR #1 reopened");
    assert_eq!(row(&card, "Author"), "6543");
    assert_eq!(row(&card, "Branches"), "6543-patch-1 → main");
    assert_eq!(
        card.link.url,
        "https://codeberg.org/test_it/test_ci_thing/pulls/1"
    );

    // The file's header says Forgejo users may write `preset: forgejo`: the rules do not change.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forgejo.yaml");
    let yaml = std::fs::read_to_string(repo_file("mappings/gitea.yaml"))
        .unwrap()
        .replacen("  preset: gitea", "  preset: forgejo", 1);
    assert!(yaml.contains("preset: forgejo"));
    std::fs::write(&path, yaml).unwrap();
    let forgejo = Sender {
        source: load(&path, &gitea.groups),
        groups: gitea.groups.clone(),
        event_header: "X-Gitea-Event",
        dir: "gitea",
    };
    let same = forgejo.card("pull_request", "pull_request.reopened.json", "pull-request");
    assert_eq!(same, card);
}

#[test]
fn a_gitea_issue_and_a_comment_on_it_link_to_the_issue() {
    let gitea = Sender::gitea();
    let card = gitea.card("issues", "issues.opened.json", "issues");
    assert_eq!(card.head.title, "gogits/hello-world: issue #1 opened");
    assert_eq!(first(&card), "Problem");
    assert_eq!(row(&card, "Author"), "unknwon");
    assert_eq!(remark(&card), "Found a bug");
    assert_eq!(
        card.link.url,
        "http://try.gitea.io/gogits/hello-world/issues/1"
    );

    let card = gitea.card(
        "issue_comment",
        "issue_comment.created.json",
        "issue-comment",
    );
    assert_eq!(card.head.title, "gogits/hello-world: comment on issue #1");
    assert_eq!(remark(&card), "Got it");
    assert_eq!(
        card.link.url,
        "http://try.gitea.io/gogits/hello-world/issues/1#issuecomment-43"
    );
}

#[test]
fn a_gitea_release_published_links_to_the_release() {
    let card = Sender::gitea().card("release", "release.published.json", "release");
    assert_eq!(card.head.title, "anbraten/demo: release 0.0.5 published");
    assert_eq!(first(&card), "Version 0.0.5");
    assert_eq!(row(&card, "Author"), "anbraten");
    assert_eq!(
        card.link.url,
        "https://git.xxx/anbraten/demo/releases/tag/0.0.5"
    );
}

#[test]
fn a_gitea_workflow_run_in_githubs_schema_renders_and_its_failure_is_prominent() {
    // Gitea 1.24+ sends workflow_run in GitHub's schema; no Gitea delivery is published, so this
    // uses GitHub's own example of that schema.
    let gitea = Sender::gitea();
    let github = Sender::github();
    let mut run = github.fixture("workflow_run.completed.json");
    let card = gitea.card_of("workflow_run", &run, "workflow-run");
    assert!(card.head.title.starts_with("Codertocat/Hello-World: "));
    run["workflow_run"]["conclusion"] = "failure".into();
    let card = gitea.card_of("workflow_run", &run, "workflow-run-failed");
    assert!(card.head.title.starts_with("❌ Codertocat/Hello-World: "));
    assert_eq!(
        card.link.url,
        "https://github.com/octo-org/octo-repo/actions/runs/1589141559"
    );
}

#[test]
fn gitea_events_not_mapped_are_ignored_with_a_reason() {
    let gitea = Sender::gitea();
    let reason = gitea.ignored("create", "create.json");
    assert!(reason.contains("push events"), "{reason}");
    let reason = gitea.ignored("repository", "create.json");
    assert!(reason.contains("not mapped"), "{reason}");
    let mut edited = gitea.fixture("issue_comment.created.json");
    edited["action"] = "edited".into();
    let reason = gitea.ignored_of("issue_comment", &edited);
    assert!(reason.contains("not sent"), "{reason}");
}

// ---- Bitbucket Cloud ----

#[test]
fn a_bitbucket_cloud_push_says_when_bitbucket_left_commits_out() {
    let card =
        Sender::bitbucket().card("repo:push", "cloud.repo_push.json", "cloud-push-truncated");
    assert_eq!(
        card.head.title,
        "arolgroup/j0664-ns2-firmware: more than 5 commit(s) to main"
    );
    assert_eq!(first(&card), "Gianpaolo Macario pushed to main");
    assert_eq!(
        rows(&card)[0],
        ("6ca0691", "Merged in gmacario/dev03 (pull request #6)")
    );
    assert_eq!(rows(&card).len(), 5);
    assert_eq!(card.link.title, "View changes");
    assert_eq!(
        card.link.url,
        "https://bitbucket.org/arolgroup/j0664-ns2-firmware/branches/compare/6ca0691239785a619fa1dce7bf1073f50499cd60..49cb0fd6590af14dbfb717d0e801f325362af5d9"
    );
}

#[test]
fn a_bitbucket_cloud_push_of_a_few_commits_and_a_branch_deletion_are_cards() {
    let bitbucket = Sender::bitbucket();
    let mut short = bitbucket.fixture("cloud.repo_push.json");
    short["push"]["changes"][0]["truncated"] = false.into();
    let card = bitbucket.card_of("repo:push", &short, "cloud-push");
    assert_eq!(
        card.head.title,
        "arolgroup/j0664-ns2-firmware: 5 commit(s) to main"
    );

    // Bitbucket sends a deleted branch as a change with `closed` and no `new`.
    let mut deleted = bitbucket.fixture("cloud.repo_push.json");
    let change = &mut deleted["push"]["changes"][0];
    change["closed"] = true.into();
    change["new"] = Value::Null;
    change["commits"] = serde_json::json!([]);
    let card = bitbucket.card_of("repo:push", &deleted, "cloud-push-delete");
    assert_eq!(
        card.head.title,
        "arolgroup/j0664-ns2-firmware: branch main deleted"
    );
    assert_eq!(
        card.link.url,
        "https://bitbucket.org/arolgroup/j0664-ns2-firmware"
    );
}

#[test]
fn a_bitbucket_cloud_pull_request_fulfilled_reads_as_merged() {
    let bitbucket = Sender::bitbucket();
    let card = bitbucket.card(
        "pullrequest:fulfilled",
        "cloud.pullrequest_fulfilled.json",
        "cloud-pull-request-merged",
    );
    assert_eq!(
        card.head.title,
        "arolgroup/j0664-ns2-firmware: PR #6 merged"
    );
    assert_eq!(first(&card), "[Feat] Integrate branch gmacario/dev03");
    assert_eq!(row(&card, "Into"), "main");
    assert_eq!(row(&card, "From"), "gmacario/dev03");
    assert_eq!(row(&card, "Merged by"), "Gianpaolo Macario");
    assert_eq!(
        card.link.url,
        "https://bitbucket.org/arolgroup/j0664-ns2-firmware/pull-requests/6"
    );

    // The same pull request under the other keys that carry a pull request.
    let pr = bitbucket.fixture("cloud.pullrequest_fulfilled.json");
    let opened = bitbucket.card_of("pullrequest:created", &pr, "cloud-pull-request-opened");
    assert_eq!(
        opened.head.title,
        "arolgroup/j0664-ns2-firmware: PR #6 opened"
    );
    assert_eq!(row(&opened, "Branches"), "gmacario/dev03 → main");
    assert_eq!(remark(&opened), "* Add section \"\\[env\\]\"");
    let declined = bitbucket.card_of("pullrequest:rejected", &pr, "cloud-pull-request-declined");
    assert_eq!(
        declined.head.title,
        "arolgroup/j0664-ns2-firmware: PR #6 declined"
    );
    let reason = bitbucket.ignored_of("pullrequest:updated", &pr);
    assert!(reason.contains("every push"), "{reason}");
}

// ---- Bitbucket Data Center ----

#[test]
fn a_bitbucket_data_center_pull_request_opened_links_to_the_pull_request() {
    let card = Sender::bitbucket().card("pr:opened", "dc.pr_opened.json", "dc-pull-request-opened");
    assert_eq!(card.head.title, "SBOX/sandbox: PR #1 opened");
    assert_eq!(first(&card), "Branch1");
    assert_eq!(row(&card, "Author"), "Hemanth V. Alluri");
    // The pull request comes from a personal fork: the branch is named with it.
    assert_eq!(
        row(&card, "Branches"),
        "~HYPRO999/sandbox-fork:branch1 → master"
    );
    assert_eq!(remark(&card), "* Add file2.txt");
    assert_eq!(
        card.link.url,
        "http://139.59.64.214:7990/projects/SBOX/repos/sandbox/pull-requests/1"
    );
}

#[test]
fn a_bitbucket_data_center_pull_request_merged_names_who_merged_it() {
    let bitbucket = Sender::bitbucket();
    let card = bitbucket.card("pr:merged", "dc.pr_merged.json", "dc-pull-request-merged");
    assert_eq!(card.head.title, "SBOX/sandbox: PR #6 merged");
    assert_eq!(first(&card), "sample_file: Add sample_file.txt.");
    assert_eq!(row(&card, "Into"), "master");
    assert_eq!(row(&card, "Merged by"), "Katsura Kotarou");
    assert_eq!(
        card.link.url,
        "http://139.59.64.214:7990/projects/SBOX/repos/sandbox/pull-requests/6"
    );

    let pr = bitbucket.fixture("dc.pr_merged.json");
    let declined = bitbucket.card_of("pr:declined", &pr, "dc-pull-request-declined");
    assert_eq!(declined.head.title, "SBOX/sandbox: PR #6 declined");
}

#[test]
fn a_bitbucket_data_center_push_shows_each_ref_moved_and_a_deletion_names_the_branch() {
    let bitbucket = Sender::bitbucket();
    let card = bitbucket.card(
        "repo:refs_changed",
        "dc.refs_changed.update_branches.json",
        "dc-push",
    );
    assert_eq!(card.head.title, "SBOX/sandbox: push to branch1, master");
    assert_eq!(first(&card), "Hemanth V. Alluri pushed to branch1, master");
    assert_eq!(
        rows(&card),
        vec![
            ("branch1", "9e5afb9 → 3980c2b"),
            ("master", "cb2e368 → fc43d13")
        ]
    );
    assert_eq!(
        card.link.url,
        "http://139.59.64.214:7990/projects/SBOX/repos/sandbox/commits/3980c2be32a7e23c795741d5dc1a2eecb9b85d6d"
    );

    let card = bitbucket.card(
        "repo:refs_changed",
        "dc.refs_changed.delete_branch.json",
        "dc-push-delete",
    );
    assert_eq!(card.head.title, "SBOX/sandbox: branch branch2 deleted");
    assert_eq!(row(&card, "Was at"), "c7fccd3");
    assert_eq!(
        card.link.url,
        "http://139.59.64.214:7990/projects/SBOX/repos/sandbox/browse"
    );
}

#[test]
fn bitbucket_payloads_without_links_and_unmapped_keys_are_ignored_with_a_reason() {
    let bitbucket = Sender::bitbucket();
    let reason = bitbucket.ignored("pr:opened", "dc.pr_opened.without_links.json");
    assert!(reason.contains("no links"), "{reason}");
    let reason = bitbucket.ignored("pr:modified", "dc.pr_opened.json");
    assert!(reason.contains("not mapped"), "{reason}");
    let reason = bitbucket.ignored("pullrequest:unapproved", "cloud.pullrequest_fulfilled.json");
    assert!(reason.contains("not sent"), "{reason}");
}

// ---- Every fixture, and the same event across hosts ----

/// Every fixture of every Git host, with the event its sender names it by.
pub(crate) const FIXTURES: &[(&str, &str, &str)] = &[
    ("gitlab", "Push Hook", "push.json"),
    ("gitlab", "Tag Push Hook", "tag_push.json"),
    ("gitlab", "Merge Request Hook", "merge_request.open.json"),
    ("gitlab", "Note Hook", "note.merge_request.json"),
    ("gitlab", "Note Hook", "note.issue.json"),
    ("gitlab", "Issue Hook", "issue.open.json"),
    ("gitlab", "Pipeline Hook", "pipeline.success.json"),
    ("gitlab", "Job Hook", "job.json"),
    ("gitlab", "Release Hook", "release.create.json"),
    ("gitlab", "Deployment Hook", "deployment.json"),
    ("gitlab", "Deployment Hook", "deployment.failed.json"),
    ("gitlab", "Push Hook", "push.new-branch.json"),
    (
        "gitlab",
        "Merge Request Hook",
        "merge_request.approved.json",
    ),
    ("gitea", "push", "push.json"),
    ("gitea", "pull_request", "pull_request.merged.json"),
    ("gitea", "pull_request", "pull_request.reopened.json"),
    ("gitea", "issues", "issues.opened.json"),
    ("gitea", "issue_comment", "issue_comment.created.json"),
    ("gitea", "release", "release.published.json"),
    ("gitea", "create", "create.json"),
    ("gitea", "push", "push.forgejo.json"),
    ("gitea", "push", "push.new-branch.json"),
    ("gitea", "pull_request", "pull_request.opened.json"),
    (
        "gitea",
        "pull_request_approved",
        "pull_request_approved.json",
    ),
    (
        "gitea",
        "pull_request_rejected",
        "pull_request_rejected.json",
    ),
    ("gitea", "pull_request_comment", "pull_request_comment.json"),
    ("gitea", "delete", "delete.tag.json"),
    ("gitea", "delete", "delete.branch.json"),
    ("bitbucket", "repo:push", "cloud.repo_push.json"),
    ("bitbucket", "repo:push", "cloud.repo_push.new_branch.json"),
    (
        "bitbucket",
        "pullrequest:fulfilled",
        "cloud.pullrequest_fulfilled.json",
    ),
    ("bitbucket", "pr:opened", "dc.pr_opened.json"),
    ("bitbucket", "pr:opened", "dc.pr_opened.without_links.json"),
    ("bitbucket", "pr:merged", "dc.pr_merged.json"),
    (
        "bitbucket",
        "pr:reviewer:needs_work",
        "dc.pr_reviewer_needs_work.json",
    ),
    (
        "bitbucket",
        "repo:commit_status_created",
        "cloud.repo_commit_status_created.json",
    ),
    (
        "bitbucket",
        "repo:commit_status_updated",
        "cloud.repo_commit_status_updated.json",
    ),
    (
        "bitbucket",
        "repo:refs_changed",
        "dc.refs_changed.delete_branch.json",
    ),
    (
        "bitbucket",
        "repo:refs_changed",
        "dc.refs_changed.update_branches.json",
    ),
];

#[test]
fn every_git_host_fixture_renders_a_valid_card_or_is_ignored_with_a_reason() {
    let senders = [
        ("gitlab", Sender::gitlab()),
        ("gitea", Sender::gitea()),
        ("bitbucket", Sender::bitbucket()),
    ];
    for dir in ["gitlab", "gitea", "bitbucket"] {
        let listed: Vec<&str> = FIXTURES
            .iter()
            .filter(|(d, _, _)| *d == dir)
            .map(|(_, _, f)| *f)
            .collect();
        for entry in std::fs::read_dir(repo_file(&format!("tests/fixtures/{dir}"))).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                assert!(
                    listed.contains(&name.as_str()),
                    "{dir}/{name} is not tested"
                );
            }
        }
    }
    let mut rendered = 0;
    for (dir, event, file) in FIXTURES {
        let sender = &senders.iter().find(|(d, _)| d == dir).unwrap().1;
        match sender.map(event, &sender.fixture(file)) {
            Routed::Rendered { messages, .. } => {
                rendered += 1;
                messages.iter().for_each(assert_valid_composite);
            }
            Routed::Ignored { reason } => assert!(!reason.is_empty(), "{dir}/{file}"),
            Routed::Failed { rule, reason } => panic!("{dir}/{file}: rule {rule}: {reason}"),
        }
    }
    assert!(rendered >= 19, "only {rendered} rendered");
}

#[test]
fn a_push_and_a_merge_read_the_same_way_from_every_git_host() {
    let push = |title: &str| {
        let (repo, rest) = title.split_once(": ").unwrap();
        assert!(repo.contains('/'), "{title}");
        let rest = rest.strip_prefix("more than ").unwrap_or(rest);
        let (n, branch) = rest.split_once(" commit(s) to ").unwrap();
        assert!(n.parse::<u32>().is_ok() && !branch.is_empty(), "{title}");
    };
    push(
        &Sender::github()
            .card("push", "push.4.json", "push-new-branch")
            .head
            .title,
    );
    push(
        &Sender::gitlab()
            .card("Push Hook", "push.json", "push")
            .head
            .title,
    );
    push(&Sender::gitea().card("push", "push.json", "push").head.title);
    push(
        &Sender::bitbucket()
            .card("repo:push", "cloud.repo_push.json", "cloud-push-truncated")
            .head
            .title,
    );

    // GitHub reports a merge as `closed` with `pull_request.merged`; its examples hold none.
    let github = Sender::github();
    let mut github_merged = github.fixture("pull_request.closed.json");
    github_merged["pull_request"]["merged"] = true.into();
    let merged = [
        github
            .card_of("pull_request", &github_merged, "pull-request-merged")
            .head
            .title,
        Sender::gitea()
            .card(
                "pull_request",
                "pull_request.merged.json",
                "pull-request-merged",
            )
            .head
            .title,
        Sender::bitbucket()
            .card(
                "pullrequest:fulfilled",
                "cloud.pullrequest_fulfilled.json",
                "cloud-pull-request-merged",
            )
            .head
            .title,
        Sender::bitbucket()
            .card("pr:merged", "dc.pr_merged.json", "dc-pull-request-merged")
            .head
            .title,
    ];
    for title in merged {
        let (repo, rest) = title.split_once(": ").unwrap();
        assert!(repo.contains('/'), "{title}");
        let number = rest
            .strip_prefix("PR #")
            .and_then(|r| r.strip_suffix(" merged"))
            .unwrap_or_else(|| panic!("{title}"));
        assert!(number.parse::<u32>().is_ok(), "{title}");
    }
}
