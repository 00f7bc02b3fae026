//! The Chinese names reports print for the values the database stores in English.

use gridcase_core::model::{CaseType, Channel, Status};

/// 咨询, 求助, … for a stored `CaseType`; the stored text itself when unknown.
pub fn case_type(stored: &str) -> String {
    let name = CaseType::parse(stored).map(|t| match t {
        CaseType::Inquiry => "咨询",
        CaseType::Help => "求助",
        CaseType::Complaint => "投诉",
        CaseType::Report => "举报",
        CaseType::Suggestion => "建议",
        CaseType::Petition => "信访",
    });
    name.map_or_else(|| stored.to_owned(), str::to_owned)
}

/// 热线, 网上, … for a stored `Channel`.
pub fn channel(stored: &str) -> String {
    let name = Channel::parse(stored).map(|c| match c {
        Channel::Hotline => "热线",
        Channel::Web => "网上",
        Channel::Letter => "来信",
        Channel::Visit => "来访",
        Channel::Video => "视频",
        Channel::Grid => "网格采集",
    });
    name.map_or_else(|| stored.to_owned(), str::to_owned)
}

/// 已派单, 已签收, … for a stored `Status`.
pub fn status(stored: &str) -> String {
    let name = Status::parse(stored).map(|s| match s {
        Status::Draft => "草稿",
        Status::Registered => "已受理",
        Status::NotAccepted => "不予受理",
        Status::Dispatched => "已派单",
        Status::Signed => "已签收",
        Status::InProgress => "办理中",
        Status::Replied => "已答复",
        Status::Reviewed => "已审核",
        Status::FollowedUp => "已回访",
        Status::Closed => "已办结",
        Status::ReturnRequested => "申请退单",
        Status::Returned => "已退单",
        Status::Merged => "已合并",
        Status::Reopened => "重启",
    });
    name.map_or_else(|| stored.to_owned(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_value_has_a_chinese_name() {
        for t in CaseType::ALL {
            assert_ne!(case_type(t.as_str()), t.as_str());
        }
        for c in Channel::ALL {
            assert_ne!(channel(c.as_str()), c.as_str());
        }
        for s in Status::ALL {
            assert_ne!(status(s.as_str()), s.as_str());
        }
        assert_eq!(case_type("later_kind"), "later_kind");
    }
}
