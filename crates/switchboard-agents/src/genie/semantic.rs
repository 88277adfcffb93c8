//! The offline semantic layer: measures, dimensions and synonyms declared in the space's config
//! turn a question into a [`Plan`], and a plan into SQL over the space's secured view.
//!
//! Parsing is a longest-phrase match of the question's words against the vocabulary, followed
//! by a small left-to-right grammar (`top N`, `by X`, values as filters). Every plan has a
//! canonical text ([`Planner::describe`]) that this same parser reads back into the same plan; the
//! answer carries it, which is how a follow-up such as "now only the top 3" recovers the plan it
//! refines from the thread without any hidden state.

use crate::sql::{quote_ident, quote_literal};
use serde::{Deserialize, Serialize};

/// The thing a space's rows are (deals, tickets…), and how to list them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// The secured view the semantic layer queries; one of `genie.views`.
    pub view: String,
    /// Words for the entity, e.g. `["deal", "opportunity"]` (plurals are matched too).
    pub names: Vec<String>,
    /// Columns that identify a row; listing questions show these plus what was asked for.
    pub key_columns: Vec<String>,
    /// Columns shown when a listing asks for nothing in particular.
    pub columns: Vec<String>,
    /// The measure used when a question names none (e.g. `revenue`).
    pub default_measure: String,
    /// The measure used for "how many"-style aggregates over the entity (e.g. `deal_count`).
    #[serde(default)]
    pub count_measure: Option<String>,
    /// The measure whose column orders listings by default; `default_measure` when absent.
    #[serde(default)]
    pub default_order: Option<String>,
}

/// An aggregate, e.g. `revenue = SUM(amount)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// Name, used as the result column; `_` reads as a space in questions.
    pub name: String,
    /// The aggregate SQL expression over the entity's view.
    pub sql: String,
    /// The row-level column behind it, so listings can show or order by it (`amount`).
    #[serde(default)]
    pub column: Option<String>,
    /// Other words for it (`sales`, `bookings`).
    #[serde(default)]
    pub synonyms: Vec<String>,
    /// Words that mean it only when no other measure is named (`total`).
    #[serde(default)]
    pub weak_synonyms: Vec<String>,
}

/// A column to group or filter by, e.g. `region`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// Name, used as the result column.
    pub name: String,
    /// The SQL expression; the column of the same name when absent.
    #[serde(default)]
    pub sql: Option<String>,
    /// Other words for it (`territory`, `salesperson`).
    #[serde(default)]
    pub synonyms: Vec<String>,
    /// Values a question may filter on, as stored (`West`, `won`).
    #[serde(default)]
    pub values: Vec<String>,
    /// Time-like: grouped results are listed in order of the dimension, not of the measure.
    #[serde(default)]
    pub chronological: bool,
}

impl Dimension {
    fn expr(&self) -> String {
        self.sql.clone().unwrap_or_else(|| quote_ident(&self.name))
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Largest first.
    Desc,
    /// Smallest first.
    Asc,
}

/// Whether a plan aggregates or lists rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Measures, optionally grouped by a dimension.
    Aggregate,
    /// Rows of the entity.
    List,
}

/// A resolved question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Aggregate or list.
    pub mode: Mode,
    /// Aggregate: the measures. List: measures whose columns are shown.
    pub measures: Vec<usize>,
    /// The group-by dimension.
    pub dimension: Option<usize>,
    /// Filters: a dimension and the values it may take.
    pub filters: Vec<(usize, Vec<usize>)>,
    /// The measure to order by (aggregate) or whose column orders the listing.
    pub order_by: Option<usize>,
    /// Explicit direction, if the question gave one.
    pub direction: Option<Direction>,
    /// Row limit.
    pub limit: Option<u32>,
}

/// What the parser read from one question, before defaults; follow-ups merge these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    measures: Vec<usize>,
    weak_measures: Vec<usize>,
    dimension: Option<usize>,
    filters: Vec<(usize, Vec<usize>)>,
    order_by: Option<usize>,
    direction: Option<Direction>,
    limit: Option<u32>,
    entity: bool,
    list_verb: bool,
}

impl Parsed {
    /// Whether the question names something to compute, not just modifiers ("top 3", "West").
    pub fn has_subject(&self) -> bool {
        !self.measures.is_empty() || !self.weak_measures.is_empty() || self.dimension.is_some() || self.entity
    }

    /// Whether anything at all was understood.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `self` refined by a follow-up: whatever the follow-up names replaces the same part.
    pub fn refine(mut self, next: Parsed) -> Parsed {
        if !next.measures.is_empty() {
            self.measures = next.measures;
            self.weak_measures.clear();
        } else if !next.weak_measures.is_empty() {
            self.weak_measures = next.weak_measures;
            self.measures.clear();
        }
        if next.dimension.is_some() {
            self.dimension = next.dimension;
        }
        for (dim, values) in next.filters {
            self.filters.retain(|(d, _)| *d != dim);
            self.filters.push((dim, values));
        }
        self.order_by = next.order_by.or(self.order_by);
        self.direction = next.direction.or(self.direction);
        self.limit = next.limit.or(self.limit);
        self.entity |= next.entity;
        self.list_verb |= next.list_verb;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    Measure(usize),
    WeakMeasure(usize),
    Dimension(usize),
    Value(usize, usize),
    Entity,
    Top,
    Bottom,
    By,
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Word(Meaning),
    Number(u32),
}

const BY_WORDS: &[&str] = &[
    "by",
    "per",
    "each",
    "for each",
    "for every",
    "across",
    "broken down by",
    "split by",
    "grouped by",
    "sorted by",
    "ordered by",
];
const TOP_WORDS: &[&str] = &["top", "largest", "biggest", "highest", "best", "most", "greatest", "first"];
const BOTTOM_WORDS: &[&str] = &["bottom", "smallest", "lowest", "least", "worst", "last"];
const LIST_WORDS: &[&str] = &["list", "show me all", "display", "which", "find"];
const NUMBER_WORDS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];
/// Listing questions without a number ("largest deals") show this many.
const DEFAULT_LIST_LIMIT: u32 = 10;
/// Limits beyond this are clamped: a question is not a bulk export.
const MAX_LIMIT: u32 = 1000;

/// Opening words that mark a question as refining the previous one.
const FOLLOW_UP_MARKERS: &[&str] =
    &["now", "and", "also", "only", "just", "instead", "same", "what about", "how about", "then", "but"];

/// Turns questions into plans and plans into SQL, from a space's semantic config.
#[derive(Debug, Clone)]
pub struct Planner {
    entity: Entity,
    measures: Vec<Measure>,
    dimensions: Vec<Dimension>,
    vocabulary: Vec<(Vec<String>, Meaning)>,
    default_measure: usize,
    count_measure: Option<usize>,
    default_order: usize,
}

/// Lowercases, splits into words and singularizes, so "Regions" and "region" match.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(singular)
        .collect()
}

fn singular(word: &str) -> String {
    if word.len() > 4 && word.ends_with("ies") {
        format!("{}y", &word[..word.len() - 3])
    } else if word.len() > 3 && word.ends_with('s') && !word.ends_with("ss") {
        word[..word.len() - 1].to_string()
    } else {
        word.to_string()
    }
}

/// Whether `question` opens like a refinement of the previous one ("now only the top 3").
pub fn is_follow_up(question: &str) -> bool {
    let w = words(question);
    FOLLOW_UP_MARKERS.iter().any(|m| {
        let mw = words(m);
        w.len() >= mw.len() && w[..mw.len()] == mw[..]
    }) || w.iter().any(|x| x == "instead")
}

impl Planner {
    /// Builds the vocabulary. `measure_index`/`dimension_index` in errors are positions in the
    /// config arrays; callers validate names before.
    pub fn new(entity: Entity, measures: Vec<Measure>, dimensions: Vec<Dimension>) -> Result<Self, String> {
        let find = |name: &str, field: &str| {
            measures
                .iter()
                .position(|m| m.name == name)
                .ok_or_else(|| format!("genie.entity.{field}: no measure is named `{name}`"))
        };
        let default_measure = find(&entity.default_measure, "default_measure")?;
        let count_measure = match &entity.count_measure {
            Some(name) => Some(find(name, "count_measure")?),
            None => None,
        };
        let default_order = match &entity.default_order {
            Some(name) => find(name, "default_order")?,
            None => default_measure,
        };
        if measures[default_order].column.is_none() {
            return Err(format!(
                "genie.entity.default_order: measure `{}` has no `column` to order rows by",
                measures[default_order].name
            ));
        }
        let mut vocabulary: Vec<(Vec<String>, Meaning)> = Vec::new();
        let mut add = |phrase: &str, meaning: Meaning| {
            let w = words(phrase);
            if !w.is_empty() {
                vocabulary.push((w, meaning));
            }
        };
        for (i, m) in measures.iter().enumerate() {
            add(&m.name.replace('_', " "), Meaning::Measure(i));
            for s in &m.synonyms {
                add(s, Meaning::Measure(i));
            }
            for s in &m.weak_synonyms {
                add(s, Meaning::WeakMeasure(i));
            }
        }
        // A measure's column names it too ("margin pct"), after every explicit synonym so those
        // win; listings describe themselves by column.
        for (i, m) in measures.iter().enumerate() {
            if let Some(c) = &m.column {
                add(&c.replace('_', " "), Meaning::Measure(i));
            }
        }
        for (i, d) in dimensions.iter().enumerate() {
            add(&d.name.replace('_', " "), Meaning::Dimension(i));
            for s in &d.synonyms {
                add(s, Meaning::Dimension(i));
            }
            for (v, value) in d.values.iter().enumerate() {
                add(value, Meaning::Value(i, v));
            }
        }
        for n in &entity.names {
            add(n, Meaning::Entity);
        }
        for w in BY_WORDS {
            add(w, Meaning::By);
        }
        for w in TOP_WORDS {
            add(w, Meaning::Top);
        }
        for w in BOTTOM_WORDS {
            add(w, Meaning::Bottom);
        }
        for w in LIST_WORDS {
            add(w, Meaning::List);
        }
        // Longest phrase first; among equals, config order (measures before dimensions).
        vocabulary.sort_by_key(|(w, _)| std::cmp::Reverse(w.len()));
        Ok(Self { entity, measures, dimensions, vocabulary, default_measure, count_measure, default_order })
    }

    /// The entity's view.
    pub fn view(&self) -> &str {
        &self.entity.view
    }

    /// Reads a question.
    pub fn parse(&self, question: &str) -> Parsed {
        let events = self.events(question);
        let mut p = Parsed::default();
        let mut i = 0;
        while i < events.len() {
            let next = events.get(i + 1).copied();
            match events[i] {
                Event::Word(Meaning::Top | Meaning::Bottom) => {
                    p.direction = Some(if events[i] == Event::Word(Meaning::Top) {
                        Direction::Desc
                    } else {
                        Direction::Asc
                    });
                    if let Some(Event::Number(n)) = next {
                        p.limit = Some(n);
                        i += 1;
                    }
                }
                Event::Number(n) => {
                    // "the 5 largest deals", "5 deals".
                    if matches!(next, Some(Event::Word(Meaning::Top | Meaning::Bottom | Meaning::Entity))) {
                        p.limit = Some(n);
                    }
                }
                Event::Word(Meaning::By) => match next {
                    Some(Event::Word(Meaning::Dimension(d))) => {
                        p.dimension = Some(d);
                        i += 1;
                    }
                    Some(Event::Word(Meaning::Measure(m) | Meaning::WeakMeasure(m))) => {
                        p.order_by = Some(m);
                        i += 1;
                    }
                    _ => {}
                },
                Event::Word(Meaning::Dimension(d)) => {
                    if p.dimension.is_none() {
                        p.dimension = Some(d);
                    }
                }
                Event::Word(Meaning::Value(d, v)) => {
                    match p.filters.iter_mut().find(|(fd, _)| *fd == d) {
                        Some((_, values)) if !values.contains(&v) => values.push(v),
                        Some(_) => {}
                        None => p.filters.push((d, vec![v])),
                    }
                    // "the West region": the dimension word belongs to the filter.
                    if next == Some(Event::Word(Meaning::Dimension(d))) {
                        i += 1;
                    }
                }
                Event::Word(Meaning::Measure(m)) => {
                    if !p.measures.contains(&m) {
                        p.measures.push(m);
                    }
                }
                Event::Word(Meaning::WeakMeasure(m)) => {
                    if !p.weak_measures.contains(&m) {
                        p.weak_measures.push(m);
                    }
                }
                Event::Word(Meaning::Entity) => p.entity = true,
                Event::Word(Meaning::List) => p.list_verb = true,
            }
            i += 1;
        }
        if !p.measures.is_empty() {
            p.weak_measures.clear();
        }
        p
    }

    fn events(&self, question: &str) -> Vec<Event> {
        let w = words(question);
        let mut events = Vec::new();
        let mut i = 0;
        while i < w.len() {
            if let Some((len, meaning)) = self
                .vocabulary
                .iter()
                .find(|(phrase, _)| w.len() - i >= phrase.len() && w[i..i + phrase.len()] == phrase[..])
                .map(|(phrase, m)| (phrase.len(), *m))
            {
                events.push(Event::Word(meaning));
                i += len;
                continue;
            }
            let number = w[i]
                .parse::<u32>()
                .ok()
                .or_else(|| NUMBER_WORDS.iter().position(|n| *n == w[i]).map(|n| n as u32));
            if let Some(n) = number {
                events.push(Event::Number(n));
            }
            i += 1;
        }
        events
    }

    /// Applies defaults and decides the mode; `None` when the question names nothing to compute.
    pub fn resolve(&self, p: &Parsed) -> Option<Plan> {
        if !p.has_subject() {
            return None;
        }
        let mut measures = if p.measures.is_empty() { p.weak_measures.clone() } else { p.measures.clone() };
        let limit = p.limit.filter(|n| *n > 0).map(|n| n.min(MAX_LIMIT));
        let listable = measures.iter().all(|m| self.measures[*m].column.is_some());
        let list = p.entity
            && p.dimension.is_none()
            && listable
            && (limit.is_some() || p.direction.is_some() || p.list_verb || measures.is_empty());
        if list {
            return Some(Plan {
                mode: Mode::List,
                measures: measures.into_iter().filter(|m| Some(*m) != p.order_by).collect(),
                dimension: None,
                filters: p.filters.clone(),
                order_by: p
                    .order_by
                    .filter(|m| self.measures[*m].column.is_some())
                    .or(Some(self.default_order)),
                direction: p.direction,
                limit: limit.or(if p.direction.is_some() { Some(DEFAULT_LIST_LIMIT) } else { None }),
            });
        }
        if measures.is_empty() {
            measures.push(match (p.entity, self.count_measure) {
                (true, Some(count)) => count,
                _ => p.order_by.unwrap_or(self.default_measure),
            });
        }
        if let Some(order) = p.order_by
            && !measures.contains(&order)
        {
            measures.push(order);
        }
        Some(Plan {
            mode: Mode::Aggregate,
            measures,
            dimension: p.dimension,
            filters: p.filters.clone(),
            order_by: p.order_by,
            direction: p.direction,
            limit,
        })
    }

    /// The plan's canonical text: a question this planner reads back into the same plan.
    pub fn describe(&self, plan: &Plan) -> String {
        let label = |s: &str| s.replace('_', " ");
        let measure_labels = |ms: &[usize]| {
            ms.iter().map(|m| label(&self.measures[*m].name)).collect::<Vec<_>>().join(" and ")
        };
        let mut out = String::new();
        let direction = match (plan.direction, plan.limit) {
            (Some(Direction::Asc), Some(n)) => format!("bottom {n}"),
            (Some(Direction::Asc), None) => "bottom".to_string(),
            (_, Some(n)) => format!("top {n}"),
            (Some(Direction::Desc), None) => "top".to_string(),
            (None, None) => String::new(),
        };
        match plan.mode {
            Mode::List => {
                out.push_str("list ");
                if !direction.is_empty() {
                    out.push_str(&direction);
                    out.push(' ');
                }
                out.push_str(&label(self.entity.names.first().map_or("rows", |n| n)));
                let column_label = |m: &usize| {
                    let m = &self.measures[*m];
                    label(m.column.as_deref().unwrap_or(&m.name))
                };
                if let Some(order) = &plan.order_by {
                    out.push_str(&format!(" by {}", column_label(order)));
                }
                if !plan.measures.is_empty() {
                    let columns: Vec<String> = plan.measures.iter().map(column_label).collect();
                    out.push_str(&format!(" with {}", columns.join(" and ")));
                }
            }
            Mode::Aggregate => {
                out.push_str(&measure_labels(&plan.measures));
                if let Some(d) = plan.dimension {
                    out.push_str(&format!(" by {}", label(&self.dimensions[d].name)));
                }
                if let Some(order) = plan.order_by {
                    out.push_str(&format!(", sorted by {}", label(&self.measures[order].name)));
                }
                if !direction.is_empty() {
                    out.push_str(&format!(", {direction}"));
                }
            }
        }
        if !plan.filters.is_empty() {
            let values: Vec<&str> = plan
                .filters
                .iter()
                .flat_map(|(d, vs)| vs.iter().map(|v| self.dimensions[*d].values[*v].as_str()))
                .collect();
            out.push_str(&format!(", for {}", values.join(" and ")));
        }
        out
    }

    /// A short heading for the answer.
    pub fn title(&self, plan: &Plan) -> String {
        // "top" without a number only orders; the heading need not say so.
        let shown = Plan { direction: plan.direction.filter(|_| plan.limit.is_some()), ..plan.clone() };
        let mut t = self.describe(&shown);
        if let Some(rest) = t.strip_prefix("list ") {
            t = rest.to_string();
        }
        let mut chars = t.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => t,
        }
    }

    /// The SQL for a plan.
    pub fn sql(&self, plan: &Plan) -> String {
        let view = quote_ident(&self.entity.view);
        let mut where_clauses = Vec::new();
        for (d, values) in &plan.filters {
            let dim = &self.dimensions[*d];
            let literals: Vec<String> = values.iter().map(|v| quote_literal(&dim.values[*v])).collect();
            where_clauses.push(if literals.len() == 1 {
                format!("{} = {}", dim.expr(), literals[0])
            } else {
                format!("{} IN ({})", dim.expr(), literals.join(", "))
            });
        }
        let where_sql = if where_clauses.is_empty() {
            String::new()
        } else {
            format!("\nWHERE {}", where_clauses.join(" AND "))
        };
        let dir = |d: Option<Direction>| match d {
            Some(Direction::Asc) => "ASC",
            _ => "DESC",
        };
        let limit_sql = plan.limit.map(|n| format!("\nLIMIT {n}")).unwrap_or_default();
        match plan.mode {
            Mode::List => {
                let mut columns: Vec<String> = if plan.measures.is_empty() {
                    self.entity.columns.clone()
                } else {
                    self.entity.key_columns.clone()
                };
                let order_col = plan
                    .order_by
                    .and_then(|m| self.measures[m].column.clone())
                    .or_else(|| self.measures[self.default_order].column.clone());
                let extra = plan
                    .measures
                    .iter()
                    .filter_map(|m| self.measures[*m].column.clone())
                    .chain(order_col.clone());
                for c in extra {
                    if !columns.contains(&c) {
                        columns.push(c);
                    }
                }
                let select: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                let mut order = Vec::new();
                if let Some(c) = &order_col {
                    order.push(format!("{} {}", quote_ident(c), dir(plan.direction)));
                }
                if let Some(key) = self.entity.key_columns.first() {
                    order.push(quote_ident(key));
                }
                format!(
                    "SELECT {}\nFROM {view}{where_sql}\nORDER BY {}{limit_sql}",
                    select.join(", "),
                    order.join(", ")
                )
            }
            Mode::Aggregate => {
                let mut select = Vec::new();
                let dim = plan.dimension.map(|d| &self.dimensions[d]);
                if let Some(dim) = dim {
                    select.push(format!("{} AS {}", dim.expr(), quote_ident(&dim.name)));
                }
                for m in &plan.measures {
                    let m = &self.measures[*m];
                    select.push(format!("{} AS {}", m.sql, quote_ident(&m.name)));
                }
                let mut sql = format!("SELECT {}\nFROM {view}{where_sql}", select.join(", "));
                if let Some(dim) = dim {
                    let name = quote_ident(&dim.name);
                    sql.push_str(&format!("\nGROUP BY {name}"));
                    let by_time = dim.chronological && plan.limit.is_none() && plan.direction.is_none();
                    if by_time {
                        sql.push_str(&format!("\nORDER BY {name}"));
                    } else {
                        let order = plan.order_by.unwrap_or(plan.measures[0]);
                        sql.push_str(&format!(
                            "\nORDER BY {} {}, {name}",
                            quote_ident(&self.measures[order].name),
                            dir(plan.direction)
                        ));
                    }
                    sql.push_str(&limit_sql);
                }
                sql
            }
        }
    }

    /// What the space can answer, for questions it cannot.
    pub fn capabilities(&self) -> String {
        let measures: Vec<String> = self.measures.iter().map(|m| m.name.replace('_', " ")).collect();
        let dims: Vec<String> = self.dimensions.iter().map(|d| d.name.replace('_', " ")).collect();
        let values: Vec<&str> =
            self.dimensions.iter().flat_map(|d| d.values.iter().map(String::as_str)).take(12).collect();
        let mut out = format!(
            "I can answer questions about {}: {} — broken down by {}",
            self.entity.names.first().map_or("rows", |n| n.as_str()),
            measures.join(", "),
            dims.join(", ")
        );
        if !values.is_empty() {
            out.push_str(&format!("; filtered by {}", values.join(", ")));
        }
        out.push_str(&format!(
            "; or list the top N {} by {}.",
            self.entity.names.first().map_or("rows", |n| n.as_str()),
            self.measures[self.default_order].column.as_deref().unwrap_or("value")
        ));
        out
    }
}
