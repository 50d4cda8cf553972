//! The Git hosts' events of issue 16 on real payloads (each directory's README under
//! `tests/fixtures/` names every payload's source): pushes of a tag or of a new branch, Forgejo's
//! own headers, trimmed and older payloads, pull requests from forks, and the events that made no
//! card before. Where a test needs a variant no host has published, it derives it from a real
//! payload and says which field it changed.

use fxhook::card::Composite;
use fxhook::pipeline::Routed;
use serde_json::{Value, json};

use crate::catalogue_git::{Sender, first, remark, row, rows};
use crate::helpers::repo_file;

/// Checks the rules every card of a Git host follows: a title naming its subject, no empty or
/// repeated row, no literal `null`, no row that is a dump of JSON, and the expected link.
fn assert_reads_well(card: &Composite, subject: &str, link: &str) {
    let title = &card.head.title;
    assert!(title.contains(subject), "{title:?} does not name {subject}");
    let mut seen = std::collections::BTreeSet::new();
    for (label, value) in rows(card) {
        assert!(!value.trim().is_empty(), "{title}: empty row {label}");
        assert!(seen.insert((label, value)), "{title}: row {label} twice");
        let raw_json = value.starts_with('{') || value.starts_with('[');
        assert!(
            !(raw_json && value.chars().count() > 200),
            "{title}: row {label} is raw JSON"
        );
    }
    let texts = [title.as_str(), first(card), remark(card)];
    for text in texts.iter().chain(rows(card).iter().map(|(_, v)| v)) {
        assert!(!text.contains("null"), "{title}: literal null in {text:?}");
    }
    assert_eq!(card.link.url, link, "{title}");
}

fn forgejo() -> Sender {
    Sender::new("gitea.yaml", "X-Forgejo-Event", "gitea")
}

// ---- Pushes: a tag, a new branch; one card per tag ----

#[test]
fn a_github_push_that_creates_a_branch_at_a_pushed_commit_names_that_commit() {
    // A real delivery: drone/go-scm's push_branch_create.json, no commits of its own.
    let card = Sender::github().card("push", "push.new-branch.json", "push-new-branch-empty");
    assert_eq!(
        card.head.title,
        "bradrydzewski/drone-test-go: branch feature-branch created"
    );
    assert_eq!(
        first(&card),
        "bradrydzewski created refs/heads/feature-branch"
    );
    assert_eq!(rows(&card), vec![("At", "d2b75aa Update .drone.yml")]);
    assert_reads_well(
        &card,
        "bradrydzewski/drone-test-go",
        "https://github.com/bradrydzewski/drone-test-go/tree/feature-branch",
    );
}

#[test]
fn a_github_push_that_creates_a_branch_with_commits_says_so_and_lists_them() {
    let card = Sender::github().card("push", "push.4.json", "push-new-branch");
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: 1 commit(s) to master"
    );
    assert_eq!(
        first(&card),
        "Codertocat pushed to refs/heads/master (new branch)"
    );
    assert_eq!(rows(&card), vec![("6113728", "Initial commit")]);
}

#[test]
fn a_forgejo_push_that_creates_a_branch_at_a_pushed_commit_names_that_commit() {
    // A real Codeberg delivery (woodpecker's HookPushBranch.json): no commits, a head commit.
    let card = Sender::gitea().card("push", "push.new-branch.json", "push-new-branch-empty");
    assert_eq!(
        card.head.title,
        "meisam/woodpecktester: branch fdsafdsa created"
    );
    assert_eq!(row(&card, "At"), "28c3613 Delete '.woodpecker/.check.yml'");
    assert_reads_well(
        &card,
        "meisam/woodpecktester",
        "https://codeberg.org/meisam/woodpecktester/src/branch/fdsafdsa",
    );
}

#[test]
fn a_gitea_tag_push_names_the_tag_and_the_tagged_commit() {
    // No Gitea tag push is published; Gitea sends one as a new ref with no commits and the
    // tagged commit as head_commit (services/repository/push.go), so this takes the real
    // Codeberg branch push and gives it a tag's ref.
    let gitea = Sender::gitea();
    let mut tag = gitea.fixture("push.new-branch.json");
    tag["ref"] = "refs/tags/v1.2".into();
    let card = gitea.card_of("push", &tag, "push-tag");
    assert_eq!(card.head.title, "meisam/woodpecktester: tag v1.2 pushed");
    assert_eq!(first(&card), "6543 pushed refs/tags/v1.2");
    assert_eq!(
        rows(&card),
        vec![("Commit", "28c3613 Delete '.woodpecker/.check.yml'")]
    );
    assert_reads_well(
        &card,
        "meisam/woodpecktester",
        "https://codeberg.org/meisam/woodpecktester/src/tag/v1.2",
    );
}

#[test]
fn a_gitlab_push_that_creates_a_branch_without_commits_says_so() {
    // A real gitlab.com delivery (zulip's push_hook__push_local_branch_without_commits.json).
    let card = Sender::gitlab().card("Push Hook", "push.new-branch.json", "push-new-branch-empty");
    assert_eq!(
        card.head.title,
        "eeshangarg/my-awesome-project: branch changes created"
    );
    assert_eq!(rows(&card), vec![("At", "68d7a55")]);
    assert_reads_well(
        &card,
        "eeshangarg/my-awesome-project",
        "https://gitlab.com/eeshangarg/my-awesome-project/-/tree/changes",
    );
}

#[test]
fn a_bitbucket_cloud_push_that_creates_a_branch_says_so() {
    // A real bitbucket.org delivery (drone/go-scm's push_branch_create.json), two commits.
    let bitbucket = Sender::bitbucket();
    let card = bitbucket.card(
        "repo:push",
        "cloud.repo_push.new_branch.json",
        "cloud-push-new-branch",
    );
    assert_eq!(card.head.title, "brydzewski/foo: 2 commit(s) to develop");
    assert_eq!(
        first(&card),
        "Brad Rydzewski pushed to develop (new branch)"
    );
    assert_eq!(
        rows(&card),
        vec![("141977f", "Update README"), ("40e7580", "initial commit")]
    );
    // The same branch created at an already pushed commit lists none.
    let mut empty = bitbucket.fixture("cloud.repo_push.new_branch.json");
    empty["push"]["changes"][0]["commits"] = json!([]);
    let card = bitbucket.card_of("repo:push", &empty, "cloud-push-new-branch-empty");
    assert_eq!(card.head.title, "brydzewski/foo: branch develop created");
    assert_eq!(row(&card, "At"), "141977f Update README");
    assert_reads_well(
        &card,
        "brydzewski/foo",
        "https://bitbucket.org/brydzewski/foo/branch/develop",
    );
}

#[test]
fn no_push_of_a_tag_or_a_new_branch_reads_zero_commits() {
    let (github, gitea, gitlab) = (Sender::github(), Sender::gitea(), Sender::gitlab());
    let mut gitea_tag = gitea.fixture("push.new-branch.json");
    gitea_tag["ref"] = "refs/tags/v1.2".into();
    let titles = [
        github.card("push", "push.0.json", "push-tag").head.title,
        github
            .card("push", "push.new-branch.json", "push-new-branch-empty")
            .head
            .title,
        gitea
            .card("push", "push.new-branch.json", "push-new-branch-empty")
            .head
            .title,
        gitea.card_of("push", &gitea_tag, "push-tag").head.title,
        gitlab
            .card("Push Hook", "push.new-branch.json", "push-new-branch-empty")
            .head
            .title,
    ];
    for title in titles {
        assert!(!title.contains("0 commit(s)"), "{title}");
    }
}

#[test]
fn a_gitea_tag_deletion_makes_one_card_and_a_branch_deletion_still_makes_its_own() {
    // Gitea sends a push (after = 40 zeros) beside the delete event of a tag, and only the
    // delete event for a branch.
    let gitea = Sender::gitea();
    let reason = gitea.ignored("delete", "delete.tag.json");
    assert!(reason.contains("push events"), "{reason}");
    let card = gitea.card("delete", "delete.branch.json", "delete");
    assert_eq!(
        card.head.title,
        "gogits/hello-world: branch feature deleted"
    );
    let mut pushed = gitea.fixture("push.json");
    pushed["ref"] = "refs/tags/v1.0.0".into();
    pushed["after"] = "0000000000000000000000000000000000000000".into();
    let card = gitea.card_of("push", &pushed, "push-delete");
    assert_eq!(card.head.title, "gitea/webhooks: tag v1.0.0 deleted");
}

// ---- Forgejo's own headers ----

#[test]
fn a_push_from_a_newer_forgejo_that_names_it_only_in_x_forgejo_event_renders_as_gitea_would() {
    // A real Codeberg delivery captured with its headers (fedora-infra's
    // webhook-to-fedora-messaging-messages): X-Forgejo-Event, no X-Gitea-Event.
    let card = forgejo().card("push", "push.forgejo.json", "push");
    assert_eq!(card.head.title, "fedora/w2fm-test: 1 commit(s) to pull");
    assert_eq!(
        rows(&card),
        vec![("1c5ccba", "Taking a dump with `json.dumps()` function")]
    );
    assert_eq!(
        card,
        Sender::gitea().card("push", "push.forgejo.json", "push")
    );
    let card = forgejo().card(
        "pull_request_rejected",
        "pull_request_rejected.json",
        "pull-request-review",
    );
    assert!(card.head.title.ends_with("changes requested"));
    let reason = forgejo().ignored("create", "create.json");
    assert!(reason.contains("push events"), "{reason}");
}

#[actix_rt::test]
async fn a_signed_forgejo_push_with_only_forgejo_headers_is_accepted_stored_and_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        crate::helpers::shipped_mapping_with_secret_file(dir.path(), "gitea", "gitea", "codeberg");
    let app = crate::helpers::spawn_app(crate::helpers::Options {
        mappings: vec![("gitea".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let body = std::fs::read(repo_file("tests/fixtures/gitea/push.forgejo.json")).unwrap();
    // The headers Codeberg sent: Forgejo's own and GitHub's signature header.
    let headers = [
        ("X-Forgejo-Event", "push".to_string()),
        (
            "X-Forgejo-Delivery",
            "3a7eee03-a3b4-473e-be5a-9e73f44bc382".to_string(),
        ),
        (
            "X-Hub-Signature-256",
            format!(
                "sha256={}",
                crate::helpers::python_hmac_hex("sha256", "codeberg", &body)
            ),
        ),
    ];
    let res = app.post_hook("gitea", body.clone(), &headers).await;
    assert_eq!(res.status(), 202);
    let stored = app.message_bodies();
    assert_eq!(
        stored[0]["composite"]["head"]["title"],
        "fedora/w2fm-test: 1 commit(s) to pull"
    );
    let event_type: String = app
        .db()
        .query_row("SELECT event_type FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        event_type, "push",
        "the event type is read from X-Forgejo-Event"
    );
    let again = app.post_hook("gitea", body, &headers).await;
    assert_eq!(
        again.status(),
        200,
        "X-Forgejo-Delivery makes the retry a duplicate"
    );
    assert_eq!(app.message_bodies().len(), 1);
}

// ---- Trimmed and older payloads ----

#[test]
fn a_trimmed_gitea_pull_request_without_its_inner_number_takes_the_top_level_one() {
    // woodpecker's first Gitea fixture: `number` at the top, none inside `pull_request`.
    let card = Sender::gitea().card("pull_request", "pull_request.opened.json", "pull-request");
    assert_eq!(card.head.title, "gordon/hello-world: PR #1 opened");
    assert_eq!(row(&card, "Branches"), "feature/changes → main");
    assert_reads_well(
        &card,
        "gordon/hello-world",
        "http://gitea.golang.org/gordon/hello-world/pull/1",
    );
}

#[test]
fn a_merge_request_without_its_iid_reads_mr_without_an_empty_reference() {
    // GitLab's documented merge request, trimmed of `iid` and `url` as older servers send it.
    let gitlab = Sender::gitlab();
    let mut merged = gitlab.fixture("merge_request.open.json");
    merged["object_attributes"]["action"] = "merge".into();
    let attributes = merged["object_attributes"].as_object_mut().unwrap();
    attributes.remove("iid");
    attributes.remove("url");
    let card = gitlab.card_of("Merge Request Hook", &merged, "merge-request-merged");
    assert_eq!(card.head.title, "gitlabhq/gitlab-test: MR merged");
    assert_reads_well(
        &card,
        "gitlabhq/gitlab-test",
        "http://example.com/gitlabhq/gitlab-test",
    );

    let mut note = gitlab.fixture("note.merge_request.json");
    note["merge_request"].as_object_mut().unwrap().remove("iid");
    let card = gitlab.card_of("Note Hook", &note, "note-on-merge-request");
    assert_eq!(card.head.title, "gitlab-org/gitlab-test: comment on MR");
}

#[test]
fn a_payload_without_its_own_page_links_the_repository_instead_of_failing() {
    // Each real payload trimmed of the address of the event's own page.
    fn without(mut payload: Value, path: &[&str]) -> Value {
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut payload;
        for key in parents {
            at = &mut at[*key];
        }
        at.as_object_mut().unwrap().remove(*last);
        payload
    }
    let (github, gitea, gitlab, bitbucket) = (
        Sender::github(),
        Sender::gitea(),
        Sender::gitlab(),
        Sender::bitbucket(),
    );
    let github_repo = "https://github.com/Codertocat/Hello-World";
    let cases = [
        (
            &github,
            "pull_request",
            without(
                github.fixture("pull_request.opened.json"),
                &["pull_request", "html_url"],
            ),
            "pull-request",
            github_repo,
        ),
        (
            &github,
            "issues",
            without(github.fixture("issues.opened.json"), &["issue", "html_url"]),
            "issues",
            github_repo,
        ),
        (
            &github,
            "release",
            without(
                github.fixture("release.published.json"),
                &["release", "html_url"],
            ),
            "release",
            github_repo,
        ),
        (
            &github,
            "workflow_job",
            without(
                without(
                    github.fixture("workflow_job.completed.json"),
                    &["workflow_job", "html_url"],
                ),
                &["workflow_job", "run_url"],
            ),
            "workflow-job-failed",
            github_repo,
        ),
        (
            &gitea,
            "pull_request",
            without(
                gitea.fixture("pull_request.merged.json"),
                &["pull_request", "html_url"],
            ),
            "pull-request-merged",
            "https://gitea.com/anbraten/test-repo",
        ),
        (
            &gitea,
            "release",
            without(
                gitea.fixture("release.published.json"),
                &["release", "html_url"],
            ),
            "release",
            "https://git.xxx/anbraten/demo",
        ),
        (
            &gitlab,
            "Issue Hook",
            without(
                gitlab.fixture("issue.open.json"),
                &["object_attributes", "url"],
            ),
            "issue",
            "http://example.com/gitlabhq/gitlab-test",
        ),
        (
            &bitbucket,
            "pullrequest:fulfilled",
            without(
                bitbucket.fixture("cloud.pullrequest_fulfilled.json"),
                &["pullrequest", "links", "html"],
            ),
            "cloud-pull-request-merged",
            "https://bitbucket.org/arolgroup/j0664-ns2-firmware",
        ),
    ];
    for (sender, event, payload, rule, link) in cases {
        let card = sender.card_of(event, &payload, rule);
        assert_eq!(card.link.url, link, "{}", card.head.title);
    }
}

#[test]
fn a_pull_request_from_a_fork_names_the_fork_before_its_branch() {
    // Bitbucket Data Center: real deliveries of pull requests from a personal fork.
    let bitbucket = Sender::bitbucket();
    let card = bitbucket.card("pr:merged", "dc.pr_merged.json", "dc-pull-request-merged");
    assert_eq!(row(&card, "From"), "~HYPRO999/sandbox-fork:master");
    assert_eq!(row(&card, "Into"), "master");

    // GitHub and Gitea: no published delivery comes from a fork, so the head repository of a
    // real pull request is renamed to a fork's (the only field a fork changes there).
    let github = Sender::github();
    let mut forked = github.fixture("pull_request.opened.json");
    forked["pull_request"]["head"]["repo"]["full_name"] = "octocat/Hello-World".into();
    forked["pull_request"]["head"]["label"] = "octocat:changes".into();
    let card = github.card_of("pull_request", &forked, "pull-request");
    assert_eq!(
        row(&card, "Branches"),
        "octocat/Hello-World:changes → master"
    );
    let mut merged = forked.clone();
    merged["action"] = "closed".into();
    merged["pull_request"]["merged"] = true.into();
    let card = github.card_of("pull_request", &merged, "pull-request-merged");
    assert_eq!(row(&card, "From"), "octocat/Hello-World:changes");

    let gitea = Sender::gitea();
    let mut review = gitea.fixture("pull_request_approved.json");
    review["pull_request"]["head"]["repo"]["full_name"] = "jony/hello_world_ci".into();
    let card = gitea.card_of("pull_request_approved", &review, "pull-request-review");
    assert_eq!(
        row(&card, "Branches"),
        "jony/hello_world_ci:jony-patch-1 → main"
    );

    // A pull request within one repository names the branch alone.
    let card = github.card("pull_request", "pull_request.opened.json", "pull-request");
    assert_eq!(row(&card, "Branches"), "changes → master");
}

// ---- GitHub events that made no card ----

#[test]
fn a_github_commit_status_is_sent_when_finished_and_a_failure_is_prominent() {
    let github = Sender::github();
    let card = github.card("status", "status.0.json", "status");
    assert_eq!(card.head.title, "Codertocat/Hello-World: default passed");
    assert_eq!(row(&card, "Commit"), "6113728 Initial commit");
    assert_eq!(row(&card, "Branches"), "master, changes, gh-pages");
    assert_reads_well(
        &card,
        "Codertocat/Hello-World",
        "https://github.com/Codertocat/Hello-World/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    );

    // The same status as a CI service reports a failure: its state, text and page.
    let mut failed = github.fixture("status.0.json");
    failed["state"] = "failure".into();
    failed["context"] = "ci/jenkins".into();
    failed["description"] = "Build #12 failed".into();
    failed["target_url"] = "https://ci.example.com/job/12".into();
    let card = github.card_of("status", &failed, "status-failed");
    assert_eq!(
        card.head.title,
        "❌ Codertocat/Hello-World: ci/jenkins failed"
    );
    assert_eq!(first(&card), "Build #12 failed");
    assert_eq!(card.link.url, "https://ci.example.com/job/12");

    failed["state"] = "pending".into();
    let reason = github.ignored_of("status", &failed);
    assert!(reason.contains("pending"), "{reason}");
}

#[test]
fn a_failed_third_party_check_run_is_sent_and_other_check_runs_are_not_sent_twice() {
    let github = Sender::github();
    let reason = github.ignored("check_run", "check_run.completed.json");
    assert!(reason.contains("check_suite"), "{reason}");
    let reason = github.ignored("check_run", "check_run.completed-2.json");
    assert!(reason.contains("GitHub Actions"), "{reason}");

    // The third-party app's real run, concluded as a failure.
    let mut failed = github.fixture("check_run.completed.json");
    failed["check_run"]["conclusion"] = "failure".into();
    let card = github.card_of("check_run", &failed, "check-run-failed");
    assert_eq!(
        card.head.title,
        "❌ Codertocat/Hello-World: check Octocoders-linter failed"
    );
    assert_eq!(row(&card, "App"), "octocoders-linter");
    assert_eq!(row(&card, "Branch"), "changes");
    assert_reads_well(
        &card,
        "Codertocat/Hello-World",
        "https://github.com/Codertocat/Hello-World/runs/128620228",
    );
}

#[test]
fn a_github_review_comment_and_a_commit_comment_link_to_the_comment() {
    let github = Sender::github();
    let card = github.card(
        "pull_request_review_comment",
        "pull_request_review_comment.created.json",
        "pull-request-review-comment",
    );
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: review comment on PR #2"
    );
    assert_eq!(first(&card), "Update the README with new information.");
    assert_eq!(row(&card, "File"), "README.md");
    assert_eq!(
        remark(&card),
        "Maybe you should use more emoji on this line."
    );
    assert_reads_well(
        &card,
        "Codertocat/Hello-World",
        "https://github.com/Codertocat/Hello-World/pull/2#discussion_r284312630",
    );

    let card = github.card(
        "commit_comment",
        "commit_comment.created.json",
        "commit-comment",
    );
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: comment on commit 6113728"
    );
    assert_eq!(first(&card), "This is a really good change! :+1:");
    assert_eq!(
        rows(&card),
        vec![("File", "README.md:1"), ("By", "Codertocat")]
    );
    assert_reads_well(
        &card,
        "Codertocat/Hello-World",
        "https://github.com/Codertocat/Hello-World/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246#commitcomment-33548674",
    );
}

#[test]
fn github_security_alerts_lead_with_a_warning_and_closed_ones_read_plainly() {
    let github = Sender::github();
    let card = github.card(
        "code_scanning_alert",
        "code_scanning_alert.created.json",
        "code-scanning-alert",
    );
    assert_eq!(
        card.head.title,
        "⚠️ Codertocat/Hello-World: code scanning alert #10 created"
    );
    assert_eq!(first(&card), "Query built from user-controlled sources");
    assert_eq!(row(&card, "Tool"), "CodeQL");
    assert_eq!(row(&card, "Ref"), "code-feature");
    let code_scanning = "https://github.com/Codertocat/Hello-World/security/code-scanning/10";
    assert_reads_well(&card, "Codertocat/Hello-World", code_scanning);

    let card = github.card(
        "code_scanning_alert",
        "code_scanning_alert.fixed.json",
        "code-scanning-alert-closed",
    );
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: code scanning alert #10 fixed"
    );
    assert_reads_well(&card, "Codertocat/Hello-World", code_scanning);
    let card = github.card(
        "code_scanning_alert",
        "code_scanning_alert.closed_by_user.json",
        "code-scanning-alert-closed",
    );
    assert!(card.head.title.ends_with("#10 dismissed"));
    assert_eq!(row(&card, "Reason"), "false positive");

    let card = github.card(
        "dependabot_alert",
        "dependabot_alert.created.json",
        "dependabot-alert",
    );
    assert_eq!(
        card.head.title,
        "⚠️ wolfy1339/pika-pack: medium vulnerability in semver"
    );
    assert_eq!(row(&card, "Manifest"), "package-lock.json");
    assert_eq!(row(&card, "Fixed in"), "7.5.2");
    assert_reads_well(
        &card,
        "wolfy1339/pika-pack",
        "https://github.com/wolfy1339/pika-pack/security/dependabot/20",
    );
    let card = github.card(
        "dependabot_alert",
        "dependabot_alert.fixed.json",
        "dependabot-alert-closed",
    );
    assert_eq!(
        card.head.title,
        "octocat/hello-world: Dependabot alert #1 fixed"
    );
    assert_eq!(row(&card, "Package"), "ansible (pip)");

    let card = github.card(
        "repository_vulnerability_alert",
        "repository_vulnerability_alert.create.json",
        "vulnerability-alert",
    );
    assert_eq!(
        card.head.title,
        "⚠️ Codertocat/Hello-World: moderate vulnerability in rack"
    );
    assert_eq!(row(&card, "Affected"), ">= 2.0.4, < 2.0.6");
    assert_reads_well(
        &card,
        "Codertocat/Hello-World",
        "https://github.com/Codertocat/Hello-World/security/dependabot",
    );
    let card = github.card(
        "repository_vulnerability_alert",
        "repository_vulnerability_alert.dismiss.json",
        "vulnerability-alert-closed",
    );
    assert_eq!(
        card.head.title,
        "Codertocat/Hello-World: many_versioned_gem alert dismissed"
    );

    // A global advisory has no repository: its subject is the package.
    let card = github.card(
        "security_advisory",
        "security_advisory.published.json",
        "security-advisory",
    );
    assert_eq!(
        card.head.title,
        "⚠️ django: moderate advisory GHSA-rf4j-j272-fj86"
    );
    assert_eq!(row(&card, "CVE"), "CVE-2018-6188");
    assert_reads_well(
        &card,
        "django",
        "https://github.com/advisories/GHSA-rf4j-j272-fj86",
    );
    let card = github.card(
        "security_advisory",
        "security_advisory.withdrawn.json",
        "security-advisory-changed",
    );
    assert_eq!(
        card.head.title,
        "static-eval: advisory GHSA-8v27-2fg9-7h62 withdrawn"
    );
}

#[test]
fn a_github_deployment_review_request_names_the_environment_and_the_reviewers() {
    let github = Sender::github();
    let card = github.card(
        "deployment_review",
        "deployment_review.requested.json",
        "deployment-review",
    );
    assert_eq!(
        card.head.title,
        "terraform-test-github/sample-app: TST deployment awaits review"
    );
    assert_eq!(first(&card), "Build pull_request 3 by @ilmax");
    assert_eq!(row(&card, "Requested by"), "ilmax");
    assert_eq!(row(&card, "Reviewers"), "admins");
    assert_reads_well(
        &card,
        "terraform-test-github/sample-app",
        "https://github.com/terraform-test-github/sample-app/actions/runs/5453085689",
    );

    // The verdict arrives with GitHub's `approver` and `comment` (the schema's fields).
    let mut approved = github.fixture("deployment_review.requested.json");
    approved["action"] = "approved".into();
    approved["approver"] = json!({"login": "octocat"});
    approved["comment"] = "Ship it".into();
    let card = github.card_of("deployment_review", &approved, "deployment-review");
    assert!(card.head.title.ends_with("TST deployment approved"));
    assert_eq!(row(&card, "By"), "octocat");
    assert_eq!(remark(&card), "Ship it");
}

// ---- GitLab events that made no card ----

#[test]
fn a_finished_gitlab_deployment_is_sent_and_a_failure_is_prominent() {
    let gitlab = Sender::gitlab();
    let card = gitlab.card("Deployment Hook", "deployment.json", "deployment");
    assert_eq!(
        card.head.title,
        "root/test-deployment-webhooks: deployment to staging succeeded"
    );
    assert_eq!(first(&card), "Add new file");
    assert_eq!(row(&card, "URL"), "https://staging.example.com");
    assert_reads_well(
        &card,
        "root/test-deployment-webhooks",
        "http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796",
    );

    let card = gitlab.card(
        "Deployment Hook",
        "deployment.failed.json",
        "deployment-failed",
    );
    assert_eq!(
        card.head.title,
        "❌ vedant8600317/test: deployment to production failed"
    );
    assert_eq!(row(&card, "Ref"), "master");
    assert_eq!(row(&card, "Commit"), "846d8de0");
    assert_reads_well(
        &card,
        "vedant8600317/test",
        "https://gitlab.com/vedant8600317/test/-/jobs/9905759933",
    );

    let mut running = gitlab.fixture("deployment.json");
    running["status"] = "running".into();
    let reason = gitlab.ignored_of("Deployment Hook", &running);
    assert!(reason.contains("finished"), "{reason}");
}

#[test]
fn a_gitlab_merge_request_approved_is_a_card() {
    // A real gitlab.com delivery: GitLab Free sends `approved` for an approval.
    let card = Sender::gitlab().card(
        "Merge Request Hook",
        "merge_request.approved.json",
        "merge-request-approval",
    );
    assert_eq!(card.head.title, "sdglitched/w2fm-test: MR !1 approved");
    assert_eq!(first(&card), "Test merge request");
    assert_eq!(row(&card, "Branches"), "test-branch → main");
    assert_eq!(row(&card, "By"), "sdglitched");
    assert_reads_well(
        &card,
        "sdglitched/w2fm-test",
        "https://gitlab.com/sdglitched/w2fm-test/-/merge_requests/1",
    );
}

#[test]
fn a_gitlab_reviewer_request_is_a_card_and_a_reviewer_removed_is_not() {
    // GitLab sends an `update` whose `changes.reviewers` holds the lists before and after; no
    // such delivery is published, so GitLab's documented merge request gets one.
    let gitlab = Sender::gitlab();
    let mut requested = gitlab.fixture("merge_request.open.json");
    let reviewer = requested["reviewers"][0].clone();
    requested["object_attributes"]["action"] = "update".into();
    requested["changes"] = json!({"reviewers": {"previous": [], "current": [reviewer.clone()]}});
    let card = gitlab.card_of(
        "Merge Request Hook",
        &requested,
        "merge-request-review-requested",
    );
    assert_eq!(
        card.head.title,
        "gitlabhq/gitlab-test: MR !1 review requested"
    );
    assert_eq!(row(&card, "Reviewers"), "user1");
    assert_reads_well(
        &card,
        "gitlabhq/gitlab-test",
        "http://example.com/diaspora/merge_requests/1",
    );

    requested["changes"] = json!({"reviewers": {"previous": [reviewer], "current": []}});
    let reason = gitlab.ignored_of("Merge Request Hook", &requested);
    assert!(reason.contains("not sent"), "{reason}");
}

// ---- Gitea / Forgejo review verdicts ----

#[test]
fn gitea_review_verdicts_read_approved_changes_requested_and_reviewed() {
    let gitea = Sender::gitea();
    let verdicts = [
        (
            "pull_request_approved",
            "approved",
            "juhu thats a great idea",
        ),
        (
            "pull_request_rejected",
            "changes requested",
            "I decided otherwhies :O",
        ),
        (
            "pull_request_comment",
            "reviewed",
            "and somethimes you have to comment",
        ),
    ];
    for (event, verdict, text) in verdicts {
        let card = gitea.card(event, &format!("{event}.json"), "pull-request-review");
        assert_eq!(
            card.head.title,
            format!("a_nice_user/hello_world_ci: PR #7 {verdict}")
        );
        assert_eq!(first(&card), "somepull");
        assert_eq!(row(&card, "Reviewer"), "a_nice_user");
        assert_eq!(row(&card, "Branches"), "jony-patch-1 → main");
        assert_eq!(remark(&card), text);
        assert_reads_well(
            &card,
            "a_nice_user/hello_world_ci",
            "https://gitea.com/a_nice_user/hello_world_ci/pulls/7",
        );
    }
}

// ---- Bitbucket events that made no card ----

#[test]
fn a_finished_bitbucket_cloud_build_is_a_card_and_one_in_progress_is_ignored() {
    let bitbucket = Sender::bitbucket();
    let card = bitbucket.card(
        "repo:commit_status_updated",
        "cloud.repo_commit_status_updated.json",
        "cloud-commit-status",
    );
    assert_eq!(
        card.head.title,
        "automationtestharness/testrepo: Pipeline #4 for main passed"
    );
    assert_eq!(row(&card, "Branch"), "main");
    assert_eq!(row(&card, "Commit"), "bdf6fac");
    let build =
        "https://bitbucket.org/automationtestharness/testrepo/addon/pipelines/home#!/results/4";
    assert_reads_well(&card, "automationtestharness/testrepo", build);

    let reason = bitbucket.ignored(
        "repo:commit_status_created",
        "cloud.repo_commit_status_created.json",
    );
    assert!(reason.contains("in progress"), "{reason}");

    // The same build, failed.
    let mut failed = bitbucket.fixture("cloud.repo_commit_status_updated.json");
    failed["commit_status"]["state"] = "FAILED".into();
    let card = bitbucket.card_of(
        "repo:commit_status_updated",
        &failed,
        "cloud-commit-status-failed",
    );
    assert_eq!(
        card.head.title,
        "❌ automationtestharness/testrepo: Pipeline #4 for main failed"
    );
    assert_eq!(card.link.url, build);
}

#[test]
fn a_bitbucket_data_center_reviewer_asking_for_work_is_a_card() {
    let card = Sender::bitbucket().card(
        "pr:reviewer:needs_work",
        "dc.pr_reviewer_needs_work.json",
        "dc-pull-request-needs-work",
    );
    assert_eq!(card.head.title, "SBOX/sandbox: PR #6 needs work");
    assert_eq!(first(&card), "sample_file: Add sample_file.txt.");
    assert_eq!(
        rows(&card),
        vec![
            ("Branches", "~HYPRO999/sandbox-fork:master → master"),
            ("By", "Katsura Kotarou"),
        ]
    );
    assert_reads_well(
        &card,
        "SBOX/sandbox",
        "http://139.59.64.214:7990/projects/SBOX/repos/sandbox/pull-requests/6",
    );
}

// ---- Every card of this issue reads well ----

#[test]
fn every_new_github_fixture_renders_a_card_that_reads_well_or_is_ignored_with_a_reason() {
    let github = Sender::github();
    let dir = repo_file("tests/fixtures/github");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") {
            continue;
        }
        let event = name.split('.').next().unwrap();
        let payload = github.fixture(&name);
        match github.map(event, &payload) {
            Routed::Rendered { messages, .. } => {
                let card = &messages[0].composite;
                let subject = payload["repository"]["full_name"]
                    .as_str()
                    .or(
                        payload["security_advisory"]["vulnerabilities"][0]["package"]["name"]
                            .as_str(),
                    )
                    .unwrap();
                let link = card.link.url.clone();
                assert_reads_well(card, subject, &link);
            }
            Routed::Ignored { reason } => assert!(!reason.is_empty(), "{name}"),
            Routed::Failed { rule, reason } => panic!("{name}: rule {rule}: {reason}"),
        }
    }
}

#[test]
fn every_gitlab_gitea_and_bitbucket_fixture_card_reads_well() {
    let senders = [
        ("gitlab", Sender::gitlab()),
        ("gitea", Sender::gitea()),
        ("bitbucket", Sender::bitbucket()),
    ];
    for (dir, event, file) in crate::catalogue_git::FIXTURES {
        let sender = &senders.iter().find(|(d, _)| d == dir).unwrap().1;
        if let Routed::Rendered { messages, .. } = sender.map(event, &sender.fixture(file)) {
            let card = &messages[0].composite;
            // The subject is the repository, written owner/name before the colon.
            let subject = card
                .head
                .title
                .trim_start_matches(['❌', '⚠', '\u{fe0f}', ' '])
                .split(": ")
                .next()
                .unwrap()
                .to_string();
            assert!(subject.contains('/'), "{dir}/{file}: {}", card.head.title);
            let link = card.link.url.clone();
            assert_reads_well(card, &subject, &link);
        }
    }
}
