//! The console's words in English and Chinese: one row per text. The language follows the
//! browser when it asks for one of the two (`Accept-Language`), else `cards.locale`.

use crate::card::Locale;

/// (key, English, Chinese).
const TEXTS: &[(&str, &str, &str)] = &[
    ("console", "fxhook console", "fxhook 控制台"),
    ("overview", "Overview", "概览"),
    ("deliveries", "Deliveries", "投递"),
    ("send_test", "Send test", "发送测试"),
    ("sign_in", "Sign in", "登录"),
    ("sign_out", "Sign out", "退出"),
    ("admin_token", "Admin token", "管理令牌"),
    ("wrong_token", "Wrong token.", "令牌不正确。"),
    (
        "too_many",
        "Too many attempts: wait a minute.",
        "尝试次数过多，请一分钟后再试。",
    ),
    ("sources", "Sources", "来源"),
    ("source", "Source", "来源"),
    ("state", "State", "状态"),
    ("active", "active", "已启用"),
    ("inactive", "inactive", "未启用"),
    ("rejected", "rejected", "已拒绝"),
    ("rejected_edit", "rejected edit", "修改被拒绝"),
    (
        "last_hour",
        "Last hour (this replica)",
        "最近一小时（本副本）",
    ),
    ("accepted", "accepted", "已接收"),
    ("ignored", "ignored", "已忽略"),
    ("refused", "refused", "已拒收"),
    ("queue", "Queue", "队列"),
    ("queued", "queued", "排队中"),
    ("in_flight", "in flight", "发送中"),
    ("oldest", "oldest waiting", "最久等待"),
    ("delivery", "Delivery", "投递"),
    ("mode", "mode", "模式"),
    ("role", "role", "角色"),
    ("token_error", "last token error", "最近一次令牌错误"),
    ("none", "none", "无"),
    ("edit", "Edit", "编辑"),
    ("mapping", "Mapping", "映射"),
    ("problems", "Problems", "问题"),
    ("no_problems", "No problems.", "没有问题。"),
    ("preview", "Card preview", "卡片预览"),
    ("send_body", "Send body", "发送内容"),
    ("event", "Event", "事件"),
    ("recent_event", "Recent event", "最近事件"),
    ("paste", "Or paste a payload", "或粘贴一个载荷"),
    (
        "headers",
        "Headers (Name: value, one a line)",
        "请求头（每行一个 Name: value）",
    ),
    ("rule", "Rule", "规则"),
    ("save", "Save", "保存"),
    ("review_save", "Review and save", "检查并保存"),
    ("diff", "Changes", "改动"),
    (
        "saved",
        "Saved; the gateway uses it now.",
        "已保存，网关已启用新版本。",
    ),
    (
        "conflict",
        "Someone saved this file since you opened it: reload to see their version.",
        "打开后此文件已被他人保存：请重新加载查看其版本。",
    ),
    (
        "not_saved",
        "Not saved: the file has errors.",
        "未保存：文件有错误。",
    ),
    (
        "read_only",
        "The mappings folder is read-only here (a ConfigMap?): download the file and deploy it.",
        "此处映射目录为只读（ConfigMap？）：请下载文件后自行部署。",
    ),
    ("download", "Download", "下载"),
    ("messages", "Messages", "消息"),
    ("all", "all", "全部"),
    ("title", "Title", "标题"),
    ("attempts", "Attempts", "尝试"),
    ("updated", "Updated", "更新时间"),
    ("recipients", "Recipients", "接收人"),
    ("replay", "Replay", "重放"),
    ("remap", "Re-map", "重新映射"),
    ("replay_all", "Replay all dead", "重放全部死信"),
    (
        "replay_all_confirm",
        "Replay every dead message",
        "重放全部死信消息",
    ),
    ("newest", "Newest", "最新"),
    ("older", "Older", "较早"),
    ("employee", "Employee id", "员工 ID"),
    ("send", "Send", "发送"),
    (
        "dry_run_note",
        "Dry run: the card is logged, not sent.",
        "试运行：卡片只记录日志，不会发送。",
    ),
    ("sent", "Sent.", "已发送。"),
    ("not_sent", "Not sent", "未发送"),
    ("back", "Back", "返回"),
    ("open", "Open", "打开"),
    ("store_down", "The store does not answer.", "存储没有响应。"),
    (
        "no_event",
        "No stored event of this source yet: paste a payload to try the rules.",
        "此来源还没有已存储的事件：粘贴一个载荷来试用规则。",
    ),
    (
        "bad_payload",
        "The payload cannot be read",
        "无法读取该载荷",
    ),
    (
        "fix_first",
        "Fix the errors to see the card.",
        "修正错误后即可看到卡片。",
    ),
    ("failed", "failed", "失败"),
    ("rendered", "card", "卡片"),
    (
        "no_source",
        "No mapping file of this name.",
        "没有这个名称的映射文件。",
    ),
    ("cancel", "Cancel", "取消"),
    ("try", "Try", "试用"),
    ("message", "Message", "消息"),
    ("last_error", "Last error", "最近错误"),
    ("started", "Started", "开始时间"),
    ("outcome", "Outcome", "结果"),
    ("vendor_message", "Vendor message", "平台返回信息"),
    (
        "note_replayed",
        "Queued again: the worker sends it now.",
        "已重新排队，将立即发送。",
    ),
    (
        "note_remapped",
        "Re-mapped with the current mapping.",
        "已使用当前映射重新映射。",
    ),
    (
        "note_replayed_all",
        "Every dead message is queued again.",
        "全部死信已重新排队。",
    ),
    (
        "note_test_queued",
        "Test card queued: this page shows its delivery.",
        "测试卡片已排队：此页显示投递情况。",
    ),
    ("filter", "Filter", "筛选"),
    ("no_dead", "No dead messages.", "没有死信消息。"),
    (
        "send_test_hint",
        "The card is queued like any other message: its page shows the attempt and the vendor's answer.",
        "卡片与其他消息一样排队发送：其页面会显示发送尝试和平台的返回。",
    ),
    ("unchanged", "No changes to save.", "没有需要保存的改动。"),
    (
        "storm",
        "Storm: cards merged in the last minute",
        "告警风暴：最近一分钟合并发送的卡片",
    ),
    ("went_out_in", "Went out in digest", "已合并到摘要卡片"),
    ("digest_of", "Digest of", "合并了"),
    ("saving", "Saving…", "正在保存…"),
    ("checking", "Checking…", "正在检查…"),
];

/// The console's text `key` in `lang` (the key itself when unknown, which a test forbids).
pub fn t(lang: Locale, key: &str) -> &'static str {
    TEXTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or("?", |(_, en, zh)| match lang {
            Locale::En => en,
            Locale::ZhCn => zh,
        })
}

/// The language of a request: the browser's first choice of English or Chinese, else `default`.
pub fn language(accept: Option<&str>, default: Locale) -> Locale {
    let Some(accept) = accept else {
        return default;
    };
    let mut ranked: Vec<(f32, &str)> = accept
        .split(',')
        .map(|part| {
            let mut it = part.trim().split(';');
            let tag = it.next().unwrap_or("").trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0);
            (q, tag)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .iter()
        .find_map(|(_, tag)| {
            let tag = tag.to_ascii_lowercase();
            if tag.starts_with("zh") {
                Some(Locale::ZhCn)
            } else if tag.starts_with("en") {
                Some(Locale::En)
            } else {
                None
            }
        })
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_has_both_languages_and_keys_are_unique() {
        let mut keys: Vec<&str> = TEXTS.iter().map(|(k, _, _)| *k).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), TEXTS.len());
        assert!(
            TEXTS
                .iter()
                .all(|(_, en, zh)| !en.is_empty() && !zh.is_empty())
        );
        assert_eq!(t(Locale::ZhCn, "save"), "保存");
    }

    #[test]
    fn the_browser_chooses_between_english_and_chinese_else_the_cards_language() {
        assert_eq!(
            language(Some("zh-CN,zh;q=0.9,en;q=0.8"), Locale::En),
            Locale::ZhCn
        );
        assert_eq!(
            language(Some("fr;q=0.9, en;q=0.5"), Locale::ZhCn),
            Locale::En
        );
        assert_eq!(language(Some("de"), Locale::ZhCn), Locale::ZhCn);
        assert_eq!(language(None, Locale::En), Locale::En);
    }
}
