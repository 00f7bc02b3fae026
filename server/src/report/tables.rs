//! The report as the tables a township sends upward: one per section, Chinese headers, the
//! figures of this period beside the previous one. CSV and XLSX both write these tables, so the
//! two formats cannot disagree. No personal data: the report holds none (cases are listed by
//! number, place, category and unit), and any text that still looks like a mobile number (a
//! unit named after a person's phone) is masked as lists mask phones (138****1234).

use gridcase_core::doc::mask_phone;

use super::period::{DAY_MS, china_time};
use super::{CaseList, Report, Tally};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Number(f64),
    /// A rate in 0..=1, shown as a percentage; `None` when its denominator is 0.
    Percent(Option<f64>),
    /// A change of a rate in percentage points.
    Points(Option<f64>),
}

/// One section: a title (the sheet's name), its column headers and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: &'static str,
    pub headers: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
}

fn text(s: &str) -> Cell {
    Cell::Text(mask_phone_numbers(s))
}

/// Masks every run of exactly 11 digits that starts with 1 (a mainland mobile number).
pub fn mask_phone_numbers(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if run == 0 {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let digits: String = chars[i..i + run].iter().collect();
        if run == 11 && digits.starts_with('1') {
            out += &mask_phone(&digits);
        } else {
            out += &digits;
        }
        i += run;
    }
    out
}

fn everywhere(value: Option<&str>) -> Cell {
    text(value.filter(|v| !v.is_empty()).unwrap_or("全部"))
}

/// The report's tables, in the order a reader goes through them.
pub fn tables(report: &Report) -> Vec<Table> {
    vec![
        summary(report),
        rates(report),
        breakdown(
            "按类型",
            &["类型", "本期件数", "上期件数", "增减"],
            &report.by_type,
            false,
        ),
        breakdown(
            "按渠道",
            &["渠道", "本期件数", "上期件数", "增减"],
            &report.by_channel,
            false,
        ),
        breakdown(
            "类别排行",
            &["排名", "类别", "本期件数", "上期件数", "增减"],
            &report.top_categories,
            true,
        ),
        breakdown(
            "区域排行",
            &["排名", "区域代码", "本期件数", "上期件数", "增减"],
            &report.top_areas,
            true,
        ),
        cases("超期件", &report.overdue),
        cases("督办件", &report.supervised),
        hot_cells(report),
        bursts(report),
    ]
}

fn summary(r: &Report) -> Table {
    let span = |p: &super::Period| format!("{} 至 {}", china_time(p.from), china_time(p.to));
    let line = |name: &str, value: Cell| vec![text(name), value];
    Table {
        title: "概况",
        headers: &["项目", "内容"],
        rows: vec![
            line("统计周期", text(&r.period.label)),
            line("起止时间", text(&span(&r.period))),
            line("上期", text(&r.previous_period.label)),
            line("区域", everywhere(Some(&r.area))),
            line("承办单位", everywhere(r.unit.as_deref())),
            line("类别", everywhere(r.category.as_deref())),
            line("受理件数", Cell::Int(r.cases)),
            line("上期受理件数", Cell::Int(r.previous_cases)),
            line("增减", Cell::Int(r.cases - r.previous_cases)),
            line("超期件数", Cell::Int(r.overdue.total)),
            line("督办件数", Cell::Int(r.supervised.total)),
            line("统计时点", text(&china_time(r.now))),
            line(
                "热点基线期数",
                Cell::Int(r.hot_spots.baseline_periods as i64),
            ),
        ],
    }
}

fn rates(r: &Report) -> Table {
    let rows = r
        .rates
        .iter()
        .map(|rate| {
            let before = r.previous_rates.iter().find(|p| p.key == rate.key);
            let previous = before.and_then(|p| p.rate);
            let change = rate.rate.zip(previous).map(|(a, b)| (a - b) * 100.0);
            vec![
                text(rate.name),
                Cell::Number(rate.numerator),
                Cell::Int(rate.denominator),
                Cell::Percent(rate.rate),
                Cell::Percent(previous),
                Cell::Points(change),
            ]
        })
        .collect();
    Table {
        title: "考核指标",
        headers: &["指标", "分子", "分母", "比率", "上期比率", "增减(百分点)"],
        rows,
    }
}

fn breakdown(
    title: &'static str,
    headers: &'static [&'static str],
    lines: &[Tally],
    ranked: bool,
) -> Table {
    let rows = lines
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let rank = ranked.then_some(Cell::Int(i as i64 + 1));
            rank.into_iter()
                .chain([
                    text(&t.name),
                    Cell::Int(t.count),
                    Cell::Int(t.previous),
                    Cell::Int(t.count - t.previous),
                ])
                .collect()
        })
        .collect();
    Table {
        title,
        headers,
        rows,
    }
}

/// The list's columns; with the complainant's phone last when the admin asked for it.
const CASE_HEADERS: [&str; 9] = [
    "工单编号",
    "区域代码",
    "类别",
    "承办单位",
    "状态",
    "受理时间",
    "办理时限",
    "答复时间",
    "来电人电话",
];

fn cases(title: &'static str, list: &CaseList) -> Table {
    let time = |at: Option<i64>| text(&at.map(china_time).unwrap_or_default());
    let revealed = list.cases.iter().any(|c| c.phone.is_some());
    let rows = list
        .cases
        .iter()
        .map(|c| {
            let mut row = vec![
                text(&c.number),
                text(&c.area),
                text(&c.category),
                text(&c.unit),
                text(&super::labels::status(&c.status)),
                time(Some(c.registered_at)),
                time(c.handle_due_at),
                time(c.replied_at),
            ];
            if revealed {
                // Asked for and audited: written as it is, not masked.
                row.push(Cell::Text(c.phone.clone().unwrap_or_default()));
            }
            row
        })
        .collect();
    let columns = if revealed { 9 } else { 8 };
    Table {
        title,
        headers: &CASE_HEADERS[..columns],
        rows,
    }
}

fn hot_cells(r: &Report) -> Table {
    let rows = r
        .hot_spots
        .cells
        .iter()
        .map(|c| {
            vec![
                text(&c.category),
                text(&c.area),
                Cell::Int(c.count),
                Cell::Number(round2(c.baseline_mean)),
                Cell::Number(round2(c.baseline_stddev)),
                Cell::Number(round2(c.score)),
            ]
        })
        .collect();
    Table {
        title: "异常热点",
        headers: &[
            "类别",
            "区域代码",
            "本期件数",
            "基线均值",
            "基线标准差",
            "偏离程度",
        ],
        rows,
    }
}

fn bursts(r: &Report) -> Table {
    let day = |index: i64| {
        let at = r.period.from + index * DAY_MS;
        china_time(at).chars().take(10).collect::<String>()
    };
    let rows = r
        .hot_spots
        .bursts
        .iter()
        .map(|b| {
            vec![
                text(&b.category),
                text(&b.area),
                text(&day(b.first_day)),
                text(&day(b.first_day + b.days - 1)),
                Cell::Int(b.count),
                Cell::Number(round2(b.expected)),
            ]
        })
        .collect();
    Table {
        title: "专班建议",
        headers: &[
            "类别",
            "区域代码",
            "起始日期",
            "截止日期",
            "件数",
            "基线预期件数",
        ],
        rows,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobile_numbers_in_text_are_masked_and_codes_are_not() {
        assert_eq!(mask_phone_numbers("王师傅13812341234"), "王师傅138****1234");
        assert_eq!(mask_phone_numbers("330604101001"), "330604101001");
        assert_eq!(mask_phone_numbers("23812341234"), "23812341234");
        assert_eq!(mask_phone_numbers("SY01-00001"), "SY01-00001");
    }
}
