//! Demo data: realistic cases in the villages of one county (绍兴市上虞区, 330604), a spread of
//! states and ages so the lists have due-soon and overdue cases, plus demo users and devices.
//! The cases are deterministic for a seed and an instant; device tokens are always fresh.

use crate::db::Commit;
use crate::documents::{Loaded, NewState, Writer, plan_commit};
use crate::store::{Result, Store, StoreError};
use automerge::AutoCommit;
use gridcase_core::area::Jurisdiction;
use gridcase_core::doc::{CaseDoc, PersonalDoc, personal_doc_id, split_doc_id};
use gridcase_core::lifecycle::Action;
use gridcase_core::model::{
    Author, CaseType, Channel, Complainant, Location, Millis, NewCase, Role, Satisfaction, Urgency,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;

/// Townships of the demo county and some of their villages.
const TOWNSHIPS: &[(&str, &str, &[&str])] = &[
    (
        "330604101",
        "百官街道",
        &["龙山村", "江滨社区", "新建村", "南湖村"],
    ),
    (
        "330604102",
        "曹娥街道",
        &["曹娥村", "孝女社区", "江东村", "五星村"],
    ),
    ("330604103", "东关街道", &["东关村", "联江村", "樟塘村"]),
    ("330604104", "道墟街道", &["道墟村", "称山村", "中塘村"]),
];

/// Category, the unit it usually goes to, the unit's demo user, and typical titles.
const CATEGORIES: &[(&str, &str, &str, &[&str])] = &[
    (
        "市场监管",
        "区市场监管局",
        "unit-market",
        &[
            "超市销售过期食品",
            "菜市场缺斤短两",
            "无证经营小吃店",
            "预付卡商家跑路",
        ],
    ),
    (
        "供水",
        "区水务集团",
        "unit-water",
        &[
            "停水两天未恢复",
            "水管破裂路面漏水",
            "自来水发黄有异味",
            "水压太低上不了楼",
        ],
    ),
    (
        "噪音",
        "街道综合执法队",
        "",
        &["夜间施工噪音扰民", "广场舞音响声音过大", "工厂机器夜间轰鸣"],
    ),
    (
        "邻里纠纷",
        "街道司法所",
        "",
        &[
            "邻居占用公共通道堆放杂物",
            "宅基地边界纠纷",
            "楼上漏水协商不成",
        ],
    ),
    (
        "道路",
        "区交通运输局",
        "",
        &["村道路面塌陷", "路灯损坏一个月无人修", "桥梁护栏缺失"],
    ),
    (
        "环境卫生",
        "街道环卫所",
        "",
        &["垃圾桶满溢长期未清运", "河道漂浮垃圾", "养殖场异味扰民"],
    ),
];

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙",
];
const GIVEN: &[&str] = &[
    "建国", "秀英", "伟", "芳", "明", "丽华", "强", "静", "国平", "桂英",
];

/// A demo user: id, role, jurisdiction.
pub const DEMO_USERS: &[(&str, Role, &str)] = &[
    ("grid-101", Role::GridWorker, "330604101"),
    ("grid-102", Role::GridWorker, "330604102"),
    ("town-101", Role::TownshipStaff, "330604101"),
    ("town-102", Role::TownshipStaff, "330604102"),
    ("unit-water", Role::HandlingUnit, "330604"),
    ("unit-market", Role::HandlingUnit, "330604"),
    ("hotline", Role::HotlineCentre, "330604"),
];

/// What `demo` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoReport {
    pub cases_created: u32,
    pub cases_skipped: u32,
    /// (user, role, token) for each demo user's new device.
    pub tokens: Vec<(String, Role, String)>,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn case_id(rng: &mut StdRng) -> String {
    let b: [u8; 16] = rng.random();
    let h = crate::store::to_hex(&b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn author(user: &str, role: Role) -> Author {
    Author {
        user: user.into(),
        device: "demo".into(),
        role,
    }
}

/// One generated case: the documents to store.
struct Generated {
    id: String,
    case: CaseDoc,
    personal: Option<PersonalDoc>,
}

fn generate(
    rng: &mut StdRng,
    index: u32,
    seed: u64,
    now: Millis,
    actor: &automerge::ActorId,
) -> Result<Generated> {
    let (township, _township_name, villages) = pick(rng, TOWNSHIPS);
    let village_index = rng.random_range(0..villages.len());
    let village = villages[village_index];
    let area_code = format!("{township}{:03}", 201 + village_index);
    let (category, unit, unit_user, titles) = pick(rng, CATEGORIES);
    let title = format!("{}{}", village, pick(rng, titles));
    let grid_user = if township.ends_with("102") {
        "grid-102"
    } else {
        "grid-101"
    };
    let town_user = if township.ends_with("102") {
        "town-102"
    } else {
        "town-101"
    };
    let case_type = *pick(
        rng,
        &[
            CaseType::Complaint,
            CaseType::Complaint,
            CaseType::Help,
            CaseType::Report,
            CaseType::Inquiry,
            CaseType::Suggestion,
        ],
    );
    let urgent = rng.random_bool(0.15);
    let new = NewCase {
        id: case_id(rng),
        number: format!("SY{seed:02}-{:05}", index + 1),
        channel: *pick(
            rng,
            &[
                Channel::Grid,
                Channel::Grid,
                Channel::Hotline,
                Channel::Web,
                Channel::Visit,
            ],
        ),
        case_type,
        category: (*category).into(),
        urgency: if urgent {
            Urgency::Urgent
        } else {
            Urgency::General
        },
        priority: rng.random_bool(0.05),
        title: title.clone(),
        description: format!(
            "{village}{}组村民反映：{title}，请尽快处理。",
            rng.random_range(1..=12)
        ),
        location: Location {
            address: format!(
                "{village}{}组{}号",
                rng.random_range(1..=12),
                rng.random_range(1..=80)
            ),
            area_code,
            gps: None,
        },
    };
    // How far along the loop the case is, and how long ago its last action was.
    let steps = *pick(rng, &[0usize, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 6, 7, 8, 8]);
    let idle = match rng.random_range(0..100) {
        0..60 => rng.random_range(0..2 * DAY),
        60..85 => rng.random_range(2 * DAY..7 * DAY),
        _ => rng.random_range(7 * DAY..30 * DAY),
    };
    let gaps: Vec<Millis> = (0..=steps)
        .map(|_| rng.random_range(HOUR / 2..20 * HOUR))
        .collect();
    let mut at = now - idle - gaps.iter().sum::<Millis>();
    let grid = author(grid_user, Role::GridWorker);
    let mut case = CaseDoc::create(&new, &grid, actor.clone(), at)?;
    let personal = if rng.random_bool(0.8) {
        let phone = format!(
            "1{}{:09}",
            pick(rng, &[3, 5, 8, 9]),
            rng.random_range(0..1_000_000_000u64)
        );
        let complainant = Complainant {
            name: format!("{}{}", pick(rng, SURNAMES), pick(rng, GIVEN)),
            phone,
            anonymous: rng.random_bool(0.1),
        };
        Some(PersonalDoc::create(&complainant, &grid, actor.clone(), at)?)
    } else {
        None
    };
    let assignee = if unit_user.is_empty() { "" } else { unit_user };
    let handler = if assignee.is_empty() {
        author(grid_user, Role::GridWorker)
    } else {
        author(assignee, Role::HandlingUnit)
    };
    let town = author(town_user, Role::TownshipStaff);
    let solved = rng.random_bool(0.85);
    let satisfaction = *pick(
        rng,
        &[
            Satisfaction::Satisfied,
            Satisfaction::Satisfied,
            Satisfaction::BasicallySatisfied,
            Satisfaction::Dissatisfied,
        ],
    );
    let plan: Vec<(Action, &Author)> = vec![
        (Action::Register, &grid),
        (
            Action::Dispatch {
                unit: (*unit).into(),
                assignee: assignee.into(),
            },
            &town,
        ),
        (Action::Sign, &handler),
        (Action::Start, &handler),
        (
            Action::Reply {
                text: "已现场核实并处理，情况已向群众说明。".into(),
            },
            &handler,
        ),
        (Action::Approve, &town),
        (
            Action::FollowUp {
                solved,
                satisfaction,
            },
            &town,
        ),
        (Action::Close, &town),
    ];
    for (i, (action, who)) in plan.into_iter().take(steps).enumerate() {
        at += gaps[i];
        if case.act(&action, who, at).is_err() {
            break; // e.g. an unsolved follow-up reopened the case: stop there
        }
    }
    Ok(Generated {
        id: new.id,
        case,
        personal,
    })
}

impl Store {
    /// Stores a document the server itself made, unless one with that id exists. Returns
    /// whether it was stored.
    pub fn insert_server_doc(
        &self,
        doc_id: &str,
        doc: &mut AutoCommit,
        now: Millis,
    ) -> Result<bool> {
        let changes = doc.get_changes(&[]);
        let case = match split_doc_id(doc_id).1 {
            true => None,
            false => Some(CaseDoc::from_automerge(doc.clone())?.read()?),
        };
        let write = plan_commit(
            self,
            NewState {
                doc_id,
                base: &Loaded::absent(),
                doc,
                new_changes: &changes,
                case: case.as_ref(),
                trusted: &Default::default(),
                writer: Writer {
                    device: None,
                    user: "demo",
                    clock: gridcase_core::sync::DeviceClock::default(),
                },
                holder: None,
                now,
            },
        );
        Ok(matches!(
            self.db().commit_doc(&write)?,
            Commit::Committed { .. }
        ))
    }
}

/// Fills the store with `cases` demo cases (deterministic for `seed` and `now`), enrols the demo
/// users and one new device each.
pub fn fill(store: &Store, cases: u32, seed: u64, now: Millis) -> Result<DemoReport> {
    let mut tokens = Vec::new();
    for (user, role, area) in DEMO_USERS {
        let jurisdiction =
            Jurisdiction::parse(area).map_err(|e| StoreError::Invalid(e.to_string()))?;
        store.enrol_user(user, *role, &jurisdiction, now)?;
        tokens.push((user.to_string(), *role, store.enrol_device(user, now)?));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let actor = store.actor();
    let mut created = 0;
    let mut skipped = 0;
    for index in 0..cases {
        let generated = generate(&mut rng, index, seed, now, &actor)?;
        let mut doc = generated.case.into_automerge();
        if store.insert_server_doc(&generated.id, &mut doc, now)? {
            created += 1;
        } else {
            skipped += 1;
            continue;
        }
        if let Some(personal) = generated.personal {
            let mut pii = personal.clone();
            store.insert_server_doc(&personal_doc_id(&generated.id), pii.automerge(), now)?;
        }
    }
    Ok(DemoReport {
        cases_created: created,
        cases_skipped: skipped,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_deterministic_and_has_overdue_cases() {
        let now = 1_760_000_000_000; // 2025-10-09
        let dir_a = tempfile::tempdir().unwrap();
        let a = Store::open(dir_a.path()).unwrap();
        let report = fill(&a, 60, 7, now).unwrap();
        assert_eq!(report.cases_created, 60);
        assert_eq!(report.tokens.len(), DEMO_USERS.len());
        let dir_b = tempfile::tempdir().unwrap();
        let b = Store::open(dir_b.path()).unwrap();
        fill(&b, 60, 7, now).unwrap();
        // The same seed generates the same case ids.
        let mut rng = StdRng::seed_from_u64(7);
        let actor = a.actor();
        let case_ids: Vec<String> = (0..60)
            .map(|i| generate(&mut rng, i, 7, now, &actor).unwrap().id)
            .collect();
        let ids = |s: &Store| {
            case_ids
                .iter()
                .map(|id| {
                    let c = s
                        .case_summary(id)
                        .unwrap()
                        .expect("every demo case is stored");
                    (c.case_id, c.status, c.due_at)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        assert!(!a.overdue(now, 1000).unwrap().is_empty());
        let statuses: std::collections::HashSet<String> =
            ids(&a).into_iter().map(|(_, s, _)| s).collect();
        assert!(statuses.len() >= 4, "{statuses:?}");
        // A second run with the same seed adds nothing.
        let again = fill(&a, 60, 7, now).unwrap();
        assert_eq!(again.cases_created, 0);
        assert_eq!(again.cases_skipped, 60);
    }
}
