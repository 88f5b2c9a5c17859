//! Policies: ordered rules over an account's signals that decide what happens to it —
//! `allow`, `review`, `block`, or a team's own outcomes (e.g. `hold_payouts`). The most
//! severe outcome among the rules that match wins; with none, the least severe.
//!
//! A rule's condition is CEL (the `cel` crate parses it: the language of Kubernetes
//! admission policies and Envoy), over the 51 features by id or catalog name (`X19`,
//! `RiskLevel`; a missing value is NaN), the model's
//! calibrated `probability` and raw `score`, and the catalog's published risk
//! indicators (`risk.CountryTier`: whether the account meets it). Missing values follow
//! CEL's rules for NaN: `==` is false and `!=` true, an ordering comparison is an error
//! that `&&` / `||` absorb when their other side decides, and a condition that ends in
//! an error does not match. A condition is
//! type-checked once into a plan over columns, then evaluated for a whole batch of
//! accounts at once, so testing a policy on history reads each column a few times
//! instead of interpreting every rule for every account; the results are CEL's own
//! interpreter's (tested on random accounts).

use crate::data::catalog::{N_FEATURES, catalog};
use cel::common::ast::{CallExpr, Expr, LiteralValue, operators};
use cel::{IdedExpr, Program};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The outcomes of a policy that names none, least severe first.
pub const DEFAULT_OUTCOMES: [&str; 3] = ["allow", "review", "block"];
/// Most rules a policy may hold.
pub const MAX_RULES: usize = 500;
/// Longest condition, in characters.
pub const MAX_CONDITION: usize = 4000;
/// Deepest condition (nested operations).
const MAX_DEPTH: usize = 64;

/// A policy as written: its outcomes from least to most severe, and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    #[serde(default = "default_outcomes")]
    pub outcomes: Vec<String>,
    pub rules: Vec<Rule>,
}

fn default_outcomes() -> Vec<String> {
    DEFAULT_OUTCOMES.iter().map(|s| s.to_string()).collect()
}

/// One rule: when its condition holds, the account gets its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rule {
    pub name: String,
    /// The CEL condition.
    pub when: String,
    pub outcome: String,
}

/// Why a policy cannot be used, said with the rule and the place in its condition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("rule {number} ({name}), line {line}, column {column}: {message}")]
    Condition {
        /// 1-based.
        number: usize,
        name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The signals of a batch of accounts a policy reads.
pub struct Signals<'a> {
    /// The raw features, one column per catalog feature (NaN: missing).
    pub columns: &'a [&'a [f64]],
    /// The calibrated probability of each account.
    pub probability: &'a [f64],
    /// The raw score of each account.
    pub score: &'a [f64],
}

impl Signals<'_> {
    pub fn rows(&self) -> usize {
        self.probability.len()
    }
}

/// A number per account.
#[derive(Debug, Clone, PartialEq)]
enum Num {
    Const(f64),
    Feature(usize),
    Probability,
    Score,
    Neg(Box<Num>),
    Arith(Arith, Box<Num>, Box<Num>),
    Cond(Box<Bool>, Box<Num>, Box<Num>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// A truth value per account.
#[derive(Debug, Clone, PartialEq)]
enum Bool {
    Const(bool),
    /// The catalog's risk indicator of a feature.
    Risk(usize),
    Cmp(Cmp, Num, Num),
    /// `==` / `!=` between truth values (`!=` is their exclusive or).
    Same(bool, Box<Bool>, Box<Bool>),
    And(Box<Bool>, Box<Bool>),
    Or(Box<Bool>, Box<Bool>),
    Not(Box<Bool>),
    In(Num, Vec<f64>),
    Cond(Box<Bool>, Box<Bool>, Box<Bool>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

/// A typed plan, before it is known which type its place needs.
enum Typed {
    Num(Num),
    Bool(Bool),
}

/// A compiled policy: each rule's plan and outcome (an index into `outcomes`).
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub policy: Policy,
    plans: Vec<Bool>,
    outcome_of: Vec<usize>,
}

/// A place in a condition and what is wrong there.
struct Fault {
    id: u64,
    message: String,
}

fn fault(e: &IdedExpr, message: impl Into<String>) -> Fault {
    Fault {
        id: e.id,
        message: message.into(),
    }
}

/// (line, column), 1-based, of character offset `offset` in `source`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for c in source.chars().take(offset) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// The feature an identifier names: its id (`X19`) or its catalog name (`RiskLevel`).
fn feature(name: &str) -> Option<usize> {
    let cat = catalog();
    cat.index_of(name)
        .or_else(|| cat.features.iter().position(|f| f.name == name))
}

const SUPPORTED: &str = "rules use numbers, true/false, the features, probability, score, risk.<feature>, comparisons, && || !, + - * /, ?: and `in [...]`";

fn compile_typed(e: &IdedExpr, depth: usize) -> Result<Typed, Fault> {
    if depth > MAX_DEPTH {
        return Err(fault(e, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let num = |x: &IdedExpr| -> Result<Num, Fault> {
        match compile_typed(x, depth + 1)? {
            Typed::Num(n) => Ok(n),
            Typed::Bool(_) => Err(fault(x, "a number is needed here, not true/false")),
        }
    };
    let boolean = |x: &IdedExpr| -> Result<Bool, Fault> {
        match compile_typed(x, depth + 1)? {
            Typed::Bool(b) => Ok(b),
            Typed::Num(_) => Err(fault(x, "true/false is needed here, not a number")),
        }
    };
    Ok(match &e.expr {
        Expr::Literal(LiteralValue::Int(v)) => Typed::Num(Num::Const(*v.inner() as f64)),
        Expr::Literal(LiteralValue::UInt(v)) => Typed::Num(Num::Const(*v.inner() as f64)),
        Expr::Literal(LiteralValue::Double(v)) => Typed::Num(Num::Const(*v.inner())),
        Expr::Literal(LiteralValue::Boolean(v)) => Typed::Bool(Bool::Const(*v.inner())),
        Expr::Ident(name) => match name.as_str() {
            "probability" => Typed::Num(Num::Probability),
            "score" => Typed::Num(Num::Score),
            "risk" => return Err(fault(e, "name the indicator: risk.<feature>")),
            n => match feature(n) {
                Some(f) => Typed::Num(Num::Feature(f)),
                None => {
                    return Err(fault(
                        e,
                        format!(
                            "unknown name {} (features are X1..X{N_FEATURES} or their catalog names; also probability, score, risk.<feature>)",
                            crate::util::text::quote(n)
                        ),
                    ));
                }
            },
        },
        Expr::Select(s) if !s.test && matches!(&s.operand.expr, Expr::Ident(r) if r == "risk") => {
            let f = feature(&s.field).ok_or_else(|| {
                fault(
                    e,
                    format!("unknown feature {}", crate::util::text::quote(&s.field)),
                )
            })?;
            if catalog().features[f].risk.is_none() {
                return Err(fault(
                    e,
                    format!(
                        "{} has no published risk indicator",
                        catalog().features[f].id
                    ),
                ));
            }
            Typed::Bool(Bool::Risk(f))
        }
        Expr::Call(call) => compile_call(e, call, depth, &num, &boolean)?,
        _ => return Err(fault(e, SUPPORTED)),
    })
}

fn compile_call(
    e: &IdedExpr,
    call: &CallExpr,
    depth: usize,
    num: &dyn Fn(&IdedExpr) -> Result<Num, Fault>,
    boolean: &dyn Fn(&IdedExpr) -> Result<Bool, Fault>,
) -> Result<Typed, Fault> {
    if call.target.is_some() {
        return Err(fault(e, SUPPORTED));
    }
    let a = &call.args;
    let two = |f: &dyn Fn(&IdedExpr, &IdedExpr) -> Result<Typed, Fault>| {
        if a.len() == 2 {
            f(&a[0], &a[1])
        } else {
            Err(fault(e, SUPPORTED))
        }
    };
    let arith = |op: Arith| {
        two(&|x, y| {
            let (x, y) = (num(x)?, num(y)?);
            if matches!(x, Num::Const(_)) && matches!(y, Num::Const(_)) {
                // CEL's integers divide and overflow as integers: a rule writes the number.
                return Err(fault(e, "arithmetic on numbers alone: write the result"));
            }
            Ok(Typed::Num(Num::Arith(op, Box::new(x), Box::new(y))))
        })
    };
    let cmp = |op: Cmp| two(&|x, y| Ok(Typed::Bool(Bool::Cmp(op, num(x)?, num(y)?))));
    let f = call.func_name.as_str();
    Ok(match f {
        operators::LOGICAL_AND | operators::LOGICAL_OR if a.len() >= 2 => {
            let and = f == operators::LOGICAL_AND;
            let mut acc = boolean(&a[0])?;
            for x in &a[1..] {
                let (l, r) = (Box::new(acc), Box::new(boolean(x)?));
                acc = if and { Bool::And(l, r) } else { Bool::Or(l, r) };
            }
            Typed::Bool(acc)
        }
        operators::LOGICAL_NOT if a.len() == 1 => Typed::Bool(Bool::Not(Box::new(boolean(&a[0])?))),
        operators::NEGATE if a.len() == 1 => match num(&a[0])? {
            Num::Const(v) => Typed::Num(Num::Const(-v)),
            n => Typed::Num(Num::Neg(Box::new(n))),
        },
        operators::ADD => arith(Arith::Add)?,
        operators::SUBSTRACT => arith(Arith::Sub)?,
        operators::MULTIPLY => arith(Arith::Mul)?,
        operators::DIVIDE => arith(Arith::Div)?,
        operators::LESS => cmp(Cmp::Lt)?,
        operators::LESS_EQUALS => cmp(Cmp::Le)?,
        operators::GREATER => cmp(Cmp::Gt)?,
        operators::GREATER_EQUALS => cmp(Cmp::Ge)?,
        operators::EQUALS | operators::NOT_EQUALS => {
            let eq = f == operators::EQUALS;
            two(
                &|x, y| match (compile_typed(x, depth + 1)?, compile_typed(y, depth + 1)?) {
                    (Typed::Num(x), Typed::Num(y)) => Ok(Typed::Bool(Bool::Cmp(
                        if eq { Cmp::Eq } else { Cmp::Ne },
                        x,
                        y,
                    ))),
                    (Typed::Bool(x), Typed::Bool(y)) => {
                        Ok(Typed::Bool(Bool::Same(eq, Box::new(x), Box::new(y))))
                    }
                    _ => Err(fault(e, "compares a number with true/false")),
                },
            )?
        }
        operators::CONDITIONAL if a.len() == 3 => {
            let c = Box::new(boolean(&a[0])?);
            match (
                compile_typed(&a[1], depth + 1)?,
                compile_typed(&a[2], depth + 1)?,
            ) {
                (Typed::Num(x), Typed::Num(y)) => {
                    Typed::Num(Num::Cond(c, Box::new(x), Box::new(y)))
                }
                (Typed::Bool(x), Typed::Bool(y)) => {
                    Typed::Bool(Bool::Cond(c, Box::new(x), Box::new(y)))
                }
                _ => return Err(fault(e, "the two sides of ?: differ in type")),
            }
        }
        operators::IN => two(&|x, y| {
            let Expr::List(list) = &y.expr else {
                return Err(fault(y, "`in` needs a list of numbers: x in [1, 2]"));
            };
            let mut values = Vec::with_capacity(list.elements.len());
            for v in &list.elements {
                match num(v)? {
                    Num::Const(c) => values.push(c),
                    _ => return Err(fault(v, "the list of `in` holds numbers only")),
                }
            }
            Ok(Typed::Bool(Bool::In(num(x)?, values)))
        })?,
        _ => return Err(fault(e, SUPPORTED)),
    })
}

impl CompiledPolicy {
    /// Checks and compiles every rule: a condition that does not parse, names
    /// something unknown or mixes types is refused with its line and column.
    pub fn compile(policy: &Policy) -> Result<CompiledPolicy, PolicyError> {
        let outcomes = &policy.outcomes;
        if outcomes.is_empty() || outcomes.len() > 16 {
            return Err(PolicyError::Invalid(format!(
                "a policy needs 1 to 16 outcomes, has {}",
                outcomes.len()
            )));
        }
        for (k, o) in outcomes.iter().enumerate() {
            let ok = !o.is_empty()
                && o.len() <= 40
                && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(PolicyError::Invalid(format!(
                    "outcome {} is not a name of letters, digits and _ (at most 40): {}",
                    k + 1,
                    crate::util::text::quote(o)
                )));
            }
            if outcomes[..k].contains(o) {
                return Err(PolicyError::Invalid(format!("outcome {o} is listed twice")));
            }
        }
        if policy.rules.len() > MAX_RULES {
            return Err(PolicyError::Invalid(format!(
                "a policy holds at most {MAX_RULES} rules, this one {}",
                policy.rules.len()
            )));
        }
        let mut plans = Vec::with_capacity(policy.rules.len());
        let mut outcome_of = Vec::with_capacity(policy.rules.len());
        for (k, rule) in policy.rules.iter().enumerate() {
            let at = |line: usize, column: usize, message: String| PolicyError::Condition {
                number: k + 1,
                name: crate::util::text::quote(&rule.name),
                line,
                column,
                message,
            };
            if rule.name.trim().is_empty() || rule.name.chars().count() > 100 {
                return Err(PolicyError::Invalid(format!(
                    "rule {} needs a name of 1 to 100 characters",
                    k + 1
                )));
            }
            if policy.rules[..k].iter().any(|r| r.name == rule.name) {
                return Err(PolicyError::Invalid(format!(
                    "two rules are named {}",
                    crate::util::text::quote(&rule.name)
                )));
            }
            let o = outcomes
                .iter()
                .position(|o| *o == rule.outcome)
                .ok_or_else(|| {
                    PolicyError::Invalid(format!(
                        "rule {} ({}): unknown outcome {} (this policy's: {})",
                        k + 1,
                        crate::util::text::quote(&rule.name),
                        crate::util::text::quote(&rule.outcome),
                        outcomes.join(", ")
                    ))
                })?;
            if rule.when.chars().count() > MAX_CONDITION {
                return Err(at(1, 1, format!("longer than {MAX_CONDITION} characters")));
            }
            let program = Program::compile(&rule.when).map_err(|errors| {
                // The parser's positions are 1-based; its message is cut before the
                // list of every token it would have accepted.
                let first = errors.errors.first();
                let (line, column) = first.map_or((1, 1), |e| {
                    (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize)
                });
                let message = first.map_or_else(
                    || "does not parse".to_string(),
                    |e| {
                        if e.msg.contains("Recursion limit") {
                            "nested too deeply for the parser".to_string()
                        } else {
                            let m = crate::util::text::one_line(&e.msg);
                            let m = m.split(" expecting ").next().unwrap_or("").to_string();
                            crate::util::text::clip(&m)
                        }
                    },
                );
                at(line, column, message)
            })?;
            let plan = match compile_typed(program.expression(), 0) {
                Ok(Typed::Bool(b)) => b,
                Ok(Typed::Num(_)) => {
                    return Err(at(
                        1,
                        1,
                        "a condition must be true/false, not a number".into(),
                    ));
                }
                Err(f) => {
                    let offset = program
                        .source_info()
                        .offset_for(f.id)
                        .map_or(0, |(start, _)| start as usize);
                    let (line, column) = line_column(&rule.when, offset);
                    return Err(at(line, column, f.message));
                }
            };
            plans.push(plan);
            outcome_of.push(o);
        }
        Ok(CompiledPolicy {
            policy: policy.clone(),
            plans,
            outcome_of,
        })
    }

    pub fn rules(&self) -> usize {
        self.plans.len()
    }

    /// The operations of every rule's plan: what deciding one account costs (measured,
    /// release, 2 cores: 1.5 us an account for the 50 rules of benches/policy50.ron,
    /// 6.4 ms for the largest policy allowed, 500 rules of 300 comparisons).
    pub fn operations(&self) -> usize {
        self.plans.iter().map(bool_size).sum()
    }

    /// The outcome index of rule `k`.
    pub fn outcome_of(&self, k: usize) -> usize {
        self.outcome_of[k]
    }

    /// Which rules match each account: one `Vec<bool>` per rule, row by row.
    pub fn matches(&self, s: &Signals) -> Result<Vec<Vec<bool>>, PolicyError> {
        let n = s.rows();
        if s.columns.len() != N_FEATURES
            || s.columns.iter().any(|c| c.len() != n)
            || s.score.len() != n
        {
            return Err(PolicyError::Invalid(format!(
                "the signals are not {N_FEATURES} features, probabilities and scores of {n} accounts"
            )));
        }
        Ok(self
            .plans
            .par_iter()
            .map(|plan| {
                let mut out = Vec::with_capacity(n);
                for start in (0..n).step_by(CHUNK) {
                    let rows = start..(start + CHUNK).min(n);
                    out.extend(eval_bool(plan, s, rows).into_iter().map(|v| v == T));
                }
                out
            })
            .collect())
    }

    /// Each account's decision (outcome index) from the rules' matches: the most severe
    /// matching outcome, the least severe when none matches.
    pub fn decide(&self, matches: &[Vec<bool>], rows: usize) -> Vec<usize> {
        let mut decision = vec![0usize; rows];
        for (k, m) in matches.iter().enumerate() {
            let o = self.outcome_of[k];
            for (d, &hit) in decision.iter_mut().zip(m) {
                if hit && o > *d {
                    *d = o;
                }
            }
        }
        decision
    }
}

/// Accounts evaluated together (their columns stay in cache across a rule's nodes).
const CHUNK: usize = 4096;

// CEL's three truth values: an ordering comparison with a missing value (NaN) is an
// error, which `&&` and `||` absorb when their other side decides (false && error is
// false, true || error is true), and a rule whose condition ends in an error does not
// match the account.
const F: u8 = 0;
const T: u8 = 1;
const E: u8 = 2;

/// Numbers of a chunk of accounts, with where they are errors (from `?:` on an error;
/// None: nowhere).
struct Nums {
    v: Vec<f64>,
    err: Option<Vec<bool>>,
}

impl Nums {
    fn plain(v: Vec<f64>) -> Nums {
        Nums { v, err: None }
    }
    fn is_err(&self, i: usize) -> bool {
        self.err.as_ref().is_some_and(|e| e[i])
    }
}

/// Where either side is an error.
fn either_err(a: &Nums, b: &Nums) -> Option<Vec<bool>> {
    match (&a.err, &b.err) {
        (None, None) => None,
        _ => Some((0..a.v.len()).map(|i| a.is_err(i) || b.is_err(i)).collect()),
    }
}

fn eval_num(n: &Num, s: &Signals, rows: std::ops::Range<usize>) -> Nums {
    match n {
        Num::Const(v) => Nums::plain(vec![*v; rows.len()]),
        Num::Feature(f) => Nums::plain(s.columns[*f][rows].to_vec()),
        Num::Probability => Nums::plain(s.probability[rows].to_vec()),
        Num::Score => Nums::plain(s.score[rows].to_vec()),
        Num::Neg(x) => {
            let mut x = eval_num(x, s, rows);
            x.v.iter_mut().for_each(|v| *v = -*v);
            x
        }
        Num::Arith(op, a, b) => {
            let x = eval_num(a, s, rows.clone());
            let y = eval_num(b, s, rows);
            let err = either_err(&x, &y);
            let v =
                x.v.iter()
                    .zip(&y.v)
                    .map(|(&a, &b)| match op {
                        Arith::Add => a + b,
                        Arith::Sub => a - b,
                        Arith::Mul => a * b,
                        Arith::Div => a / b,
                    })
                    .collect();
            Nums { v, err }
        }
        Num::Cond(c, a, b) => {
            let c = eval_bool(c, s, rows.clone());
            let (a, b) = (eval_num(a, s, rows.clone()), eval_num(b, s, rows));
            let pick = |i: usize| if c[i] == T { &a } else { &b };
            let v = (0..c.len()).map(|i| pick(i).v[i]).collect();
            let err = (0..c.len())
                .map(|i| c[i] == E || pick(i).is_err(i))
                .collect();
            Nums { v, err: Some(err) }
        }
    }
}

/// Truth values (F, T, E) of a chunk of accounts.
fn eval_bool(b: &Bool, s: &Signals, rows: std::ops::Range<usize>) -> Vec<u8> {
    let of = |v: bool| if v { T } else { F };
    let compare = |op: Cmp, a: f64, b: f64| {
        if matches!(op, Cmp::Eq | Cmp::Ne) || !(a.is_nan() || b.is_nan()) {
            of(op.holds(a, b))
        } else {
            E
        }
    };
    match b {
        Bool::Const(v) => vec![of(*v); rows.len()],
        Bool::Risk(f) => {
            let rule = catalog().features[*f]
                .risk
                .as_ref()
                .expect("checked when compiled");
            s.columns[*f][rows]
                .iter()
                .map(|&v| of(rule.matches(v)))
                .collect()
        }
        // A feature or the probability against a number: no copy of the column.
        Bool::Cmp(op, Num::Feature(f), Num::Const(c)) => s.columns[*f][rows]
            .iter()
            .map(|&v| compare(*op, v, *c))
            .collect(),
        Bool::Cmp(op, Num::Probability, Num::Const(c)) => s.probability[rows]
            .iter()
            .map(|&v| compare(*op, v, *c))
            .collect(),
        Bool::Cmp(op, a, b) => {
            let (x, y) = (eval_num(a, s, rows.clone()), eval_num(b, s, rows));
            (0..x.v.len())
                .map(|i| {
                    if x.is_err(i) || y.is_err(i) {
                        E
                    } else {
                        compare(*op, x.v[i], y.v[i])
                    }
                })
                .collect()
        }
        Bool::Same(eq, a, b) => {
            let (x, y) = (eval_bool(a, s, rows.clone()), eval_bool(b, s, rows));
            x.iter()
                .zip(y)
                .map(|(&a, b)| {
                    if a == E || b == E {
                        E
                    } else {
                        of((a == b) == *eq)
                    }
                })
                .collect()
        }
        Bool::And(a, b) => {
            let mut x = eval_bool(a, s, rows.clone());
            let y = eval_bool(b, s, rows);
            x.iter_mut().zip(y).for_each(|(a, b)| {
                *a = if *a == F || b == F {
                    F
                } else if *a == E || b == E {
                    E
                } else {
                    T
                }
            });
            x
        }
        Bool::Or(a, b) => {
            let mut x = eval_bool(a, s, rows.clone());
            let y = eval_bool(b, s, rows);
            x.iter_mut().zip(y).for_each(|(a, b)| {
                *a = if *a == T || b == T {
                    T
                } else if *a == E || b == E {
                    E
                } else {
                    F
                }
            });
            x
        }
        Bool::Not(a) => eval_bool(a, s, rows)
            .into_iter()
            .map(|v| if v == E { E } else { of(v == F) })
            .collect(),
        // Membership is equality: a missing value is in no list.
        Bool::In(x, values) => {
            let x = eval_num(x, s, rows);
            (0..x.v.len())
                .map(|i| {
                    if x.is_err(i) {
                        E
                    } else {
                        of(values.contains(&x.v[i]))
                    }
                })
                .collect()
        }
        Bool::Cond(c, a, b) => {
            let c = eval_bool(c, s, rows.clone());
            let (a, b) = (eval_bool(a, s, rows.clone()), eval_bool(b, s, rows));
            (0..c.len())
                .map(|i| match c[i] {
                    T => a[i],
                    F => b[i],
                    _ => E,
                })
                .collect()
        }
    }
}

/// One account's signals, as a request brings them.
pub struct Account<'a> {
    /// The 51 raw features (NaN: missing).
    pub values: &'a [f64],
    pub probability: f64,
    pub score: f64,
}

/// A policy's decision on one account: its outcome (an index into the policy's
/// outcomes) and the rules that matched, in the policy's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: usize,
    pub matched: Vec<usize>,
}

impl CompiledPolicy {
    /// The decision on one account: the same rules and truth values as [`Self::matches`]
    /// and [`Self::decide`], walked once for the account (no columns to build).
    pub fn decide_one(&self, a: &Account) -> Decision {
        let mut d = Decision {
            outcome: 0,
            matched: Vec::new(),
        };
        if a.values.len() != N_FEATURES {
            return d;
        }
        for (k, plan) in self.plans.iter().enumerate() {
            if bool_one(plan, a) == T {
                d.matched.push(k);
                d.outcome = d.outcome.max(self.outcome_of[k]);
            }
        }
        d
    }

    /// The name of outcome `o`.
    pub fn outcome_name(&self, o: usize) -> &str {
        &self.policy.outcomes[o]
    }
}

fn num_size(n: &Num) -> usize {
    1 + match n {
        Num::Const(_) | Num::Feature(_) | Num::Probability | Num::Score => 0,
        Num::Neg(x) => num_size(x),
        Num::Arith(_, a, b) => num_size(a) + num_size(b),
        Num::Cond(c, a, b) => bool_size(c) + num_size(a) + num_size(b),
    }
}

fn bool_size(b: &Bool) -> usize {
    1 + match b {
        Bool::Const(_) | Bool::Risk(_) => 0,
        Bool::Cmp(_, a, b) => num_size(a) + num_size(b),
        Bool::Same(_, a, b) | Bool::And(a, b) | Bool::Or(a, b) => bool_size(a) + bool_size(b),
        Bool::Not(a) => bool_size(a),
        Bool::In(x, v) => num_size(x) + v.len(),
        Bool::Cond(c, a, b) => bool_size(c) + bool_size(a) + bool_size(b),
    }
}

/// A number of one account; None where it is an error.
fn num_one(n: &Num, a: &Account) -> Option<f64> {
    Some(match n {
        Num::Const(v) => *v,
        Num::Feature(f) => a.values[*f],
        Num::Probability => a.probability,
        Num::Score => a.score,
        Num::Neg(x) => -num_one(x, a)?,
        Num::Arith(op, x, y) => {
            let (x, y) = (num_one(x, a), num_one(y, a));
            let (x, y) = (x?, y?);
            match op {
                Arith::Add => x + y,
                Arith::Sub => x - y,
                Arith::Mul => x * y,
                Arith::Div => x / y,
            }
        }
        Num::Cond(c, x, y) => match bool_one(c, a) {
            T => num_one(x, a)?,
            F => num_one(y, a)?,
            _ => return None,
        },
    })
}

/// The truth value (F, T, E) of one account.
fn bool_one(b: &Bool, a: &Account) -> u8 {
    let of = |v: bool| if v { T } else { F };
    match b {
        Bool::Const(v) => of(*v),
        Bool::Risk(f) => of(catalog().features[*f]
            .risk
            .as_ref()
            .is_some_and(|r| r.matches(a.values[*f]))),
        Bool::Cmp(op, x, y) => match (num_one(x, a), num_one(y, a)) {
            (Some(x), Some(y))
                if matches!(op, Cmp::Eq | Cmp::Ne) || !(x.is_nan() || y.is_nan()) =>
            {
                of(op.holds(x, y))
            }
            _ => E,
        },
        Bool::Same(eq, x, y) => match (bool_one(x, a), bool_one(y, a)) {
            (E, _) | (_, E) => E,
            (x, y) => of((x == y) == *eq),
        },
        Bool::And(x, y) => match (bool_one(x, a), bool_one(y, a)) {
            (F, _) | (_, F) => F,
            (E, _) | (_, E) => E,
            _ => T,
        },
        Bool::Or(x, y) => match (bool_one(x, a), bool_one(y, a)) {
            (T, _) | (_, T) => T,
            (E, _) | (_, E) => E,
            _ => F,
        },
        Bool::Not(x) => match bool_one(x, a) {
            E => E,
            v => of(v == F),
        },
        Bool::In(x, values) => match num_one(x, a) {
            Some(v) => of(values.contains(&v)),
            None => E,
        },
        Bool::Cond(c, x, y) => match bool_one(c, a) {
            T => bool_one(x, a),
            F => bool_one(y, a),
            _ => E,
        },
    }
}

/// One rule's record on labelled history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResult {
    pub name: String,
    pub outcome: String,
    /// Accounts whose signals meet the condition.
    pub hits: usize,
    /// Of those, accounts labelled spammer, and labelled at all.
    pub spammers_hit: usize,
    pub labelled_hits: usize,
    /// Spammers among the labelled hits (None: no labelled hit).
    pub precision: Option<f64>,
    /// Share of the labelled spammers it hits (None: no labelled spammer).
    pub recall: Option<f64>,
}

/// One outcome's record: the accounts the policy decides so.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeResult {
    pub outcome: String,
    pub accounts: usize,
    pub spammers: usize,
    pub labelled: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// An account the draft decides otherwise than the live policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changed {
    /// The account's row in the batch.
    pub row: usize,
    pub live: String,
    pub draft: String,
}

/// What a policy would have done to a batch of accounts with the labels known so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backtest {
    pub accounts: usize,
    pub labelled: usize,
    pub spammers: usize,
    pub rules: Vec<RuleResult>,
    pub outcomes: Vec<OutcomeResult>,
    /// With a live policy: the accounts decided otherwise, in row order.
    pub changed: Vec<Changed>,
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Backtest {
    /// Runs `draft` (and `live`, to compare) on the signals; `labels` holds each
    /// account's label where one is known.
    pub fn run(
        draft: &CompiledPolicy,
        live: Option<&CompiledPolicy>,
        s: &Signals,
        labels: &[Option<u8>],
    ) -> Result<Backtest, PolicyError> {
        let n = s.rows();
        if labels.len() != n {
            return Err(PolicyError::Invalid(format!(
                "{} labels for {n} accounts",
                labels.len()
            )));
        }
        let matches = draft.matches(s)?;
        let decision = draft.decide(&matches, n);
        let labelled = labels.iter().filter(|l| l.is_some()).count();
        let spammers = labels.iter().filter(|l| **l == Some(1)).count();
        let count = |hit: &dyn Fn(usize) -> bool| {
            let (mut all, mut spam, mut lab) = (0, 0, 0);
            for (i, l) in labels.iter().enumerate() {
                if hit(i) {
                    all += 1;
                    lab += usize::from(l.is_some());
                    spam += usize::from(*l == Some(1));
                }
            }
            (all, spam, lab)
        };
        let rules = draft
            .policy
            .rules
            .iter()
            .zip(&matches)
            .map(|(r, m)| {
                let (hits, spam, lab) = count(&|i| m[i]);
                RuleResult {
                    name: r.name.clone(),
                    outcome: r.outcome.clone(),
                    hits,
                    spammers_hit: spam,
                    labelled_hits: lab,
                    precision: ratio(spam, lab),
                    recall: ratio(spam, spammers),
                }
            })
            .collect();
        let outcomes = draft
            .policy
            .outcomes
            .iter()
            .enumerate()
            .map(|(o, name)| {
                let (accounts, spam, lab) = count(&|i| decision[i] == o);
                OutcomeResult {
                    outcome: name.clone(),
                    accounts,
                    spammers: spam,
                    labelled: lab,
                    precision: ratio(spam, lab),
                    recall: ratio(spam, spammers),
                }
            })
            .collect();
        let changed = match live {
            None => Vec::new(),
            Some(live) => {
                let theirs = live.decide(&live.matches(s)?, n);
                decision
                    .iter()
                    .zip(&theirs)
                    .enumerate()
                    .filter(|(_, (d, l))| draft.policy.outcomes[**d] != live.policy.outcomes[**l])
                    .map(|(row, (d, l))| Changed {
                        row,
                        live: live.policy.outcomes[*l].clone(),
                        draft: draft.policy.outcomes[*d].clone(),
                    })
                    .collect()
            }
        };
        Ok(Backtest {
            accounts: n,
            labelled,
            spammers,
            rules,
            outcomes,
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;

    fn rule(name: &str, when: &str, outcome: &str) -> Rule {
        Rule {
            name: name.into(),
            when: when.into(),
            outcome: outcome.into(),
        }
    }

    fn policy(rules: Vec<Rule>) -> Policy {
        Policy {
            outcomes: default_outcomes(),
            rules,
        }
    }

    fn error(when: &str) -> String {
        CompiledPolicy::compile(&policy(vec![rule("r", when, "block")]))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_bad_condition_is_refused_with_its_place() {
        let e = error("X19 > 3 && X99 < 2");
        assert!(
            e.starts_with("rule 1 (\"r\"), line 1, column 12: unknown name \"X99\""),
            "{e}"
        );
        let e = error("probability >\n  0.5 && RiskLevl == 2");
        assert!(
            e.contains("line 2, column 10: unknown name \"RiskLevl\""),
            "{e}"
        );
        let e = error("X19 > )");
        assert!(
            e.ends_with("line 1, column 7: Syntax error: mismatched input ')'"),
            "{e}"
        );
        let e = error(&format!("{}X19 > 1{}", "(".repeat(500), ")".repeat(500)));
        assert!(e.ends_with("nested too deeply for the parser"), "{e}");
        let e = error("X19 + 1");
        assert!(e.contains("must be true/false"), "{e}");
        let e = error("X19 > 2 && X3");
        assert!(e.contains("column 12: true/false is needed here"), "{e}");
        let e = error("risk.X2");
        assert!(e.contains("X2 has no published risk indicator"), "{e}");
        let e = error("size(X19) > 2");
        assert!(e.contains("rules use numbers"), "{e}");
        let e = error("2 * 3 > X19");
        assert!(e.contains("write the result"), "{e}");
        let e = CompiledPolicy::compile(&policy(vec![rule("r", "X19 > 3", "ban")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown outcome \"ban\""), "{e}");
        // Names and ids are the same feature.
        let cat = catalog();
        let by_name = format!("{} > 3", cat.features[18].name);
        assert_eq!(
            CompiledPolicy::compile(&policy(vec![rule("r", &by_name, "block")]))
                .unwrap()
                .plans,
            CompiledPolicy::compile(&policy(vec![rule("r", "X19 > 3", "block")]))
                .unwrap()
                .plans
        );
    }

    /// Random accounts: features across their ranges with some missing, a
    /// probability and a score.
    fn accounts(n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
        let mut rng = SplitMix64::new(seed);
        let columns = catalog()
            .features
            .iter()
            .map(|f| {
                (0..n)
                    .map(|_| {
                        if rng.next_f64() < 0.05 {
                            f64::NAN
                        } else {
                            (f.min + rng.next_f64() * (f.max - f.min).min(40.0)).round()
                        }
                    })
                    .collect()
            })
            .collect();
        let p: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
        let s: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
        (columns, p, s)
    }

    const CONDITIONS: [&str; 12] = [
        "probability > 0.8",
        "X19 >= 3 && probability > 0.3",
        "RiskLevel == 2.0 || X4 in [5.0, 6.0, 7.0]",
        "!(X10 == 1.0) && score < 0.5",
        "risk.X8 && !risk.CountryTier",
        "(X19 > 3 ? probability : score) > 0.5",
        "X5 / (X6 + 1.0) > 0.4 || -X7 < -10.0",
        "X19 != 2.0",
        "(X19 > 1.0) == (X20 > 1.0)",
        "X21 * 2.0 - X22 >= 3.0 && true",
        // false decides && and true decides || even beside an undecidable comparison.
        "!(X19 > 3.0 && probability > 0.5)",
        "!(X20 < 2.0 || probability < 2.0) || score > 0.9",
    ];

    /// The batch plan gives CEL's own interpreter's answer for every account.
    #[test]
    fn batches_decide_as_cels_interpreter_does() {
        let n = 400;
        let (columns, p, sc) = accounts(n, 7);
        let refs: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        let s = Signals {
            columns: &refs,
            probability: &p,
            score: &sc,
        };
        let rules: Vec<Rule> = CONDITIONS
            .iter()
            .enumerate()
            .map(|(k, c)| rule(&format!("r{k}"), c, "review"))
            .collect();
        let compiled = CompiledPolicy::compile(&policy(rules)).unwrap();
        let matches = compiled.matches(&s).unwrap();
        let cat = catalog();
        let mut hits = vec![0; CONDITIONS.len()];
        let mut undecided = 0;
        for i in 0..n {
            let mut ctx = cel::Context::default();
            let mut risk: std::collections::HashMap<String, bool> = Default::default();
            for (f, feat) in cat.features.iter().enumerate() {
                let v = columns[f][i];
                ctx.add_variable_from_value(feat.id.clone(), v);
                ctx.add_variable_from_value(feat.name.clone(), v);
                if let Some(r) = &feat.risk {
                    risk.insert(feat.id.clone(), r.matches(v));
                    risk.insert(feat.name.clone(), r.matches(v));
                }
            }
            ctx.add_variable_from_value("probability", p[i]);
            ctx.add_variable_from_value("score", sc[i]);
            ctx.add_variable_from_value("risk", risk);
            // One account at a time (a request) matches the same rules as the batch.
            let values: Vec<f64> = (0..N_FEATURES).map(|f| columns[f][i]).collect();
            let one = compiled.decide_one(&Account {
                values: &values,
                probability: p[i],
                score: sc[i],
            });
            let batch: Vec<usize> = (0..CONDITIONS.len()).filter(|&k| matches[k][i]).collect();
            assert_eq!(one.matched, batch, "account {i}");
            for (k, c) in CONDITIONS.iter().enumerate() {
                // A condition CEL cannot decide (an ordering comparison with a missing
                // value) does not match.
                let theirs = match cel::Program::compile(c).unwrap().execute(&ctx) {
                    Ok(cel::Value::Bool(b)) => b,
                    Ok(other) => panic!("{c}: {other:?}"),
                    Err(_) => {
                        undecided += 1;
                        false
                    }
                };
                assert_eq!(theirs, matches[k][i], "{c} on account {i}");
                hits[k] += usize::from(matches[k][i]);
            }
        }
        // Every condition is met by some accounts and not by others; missing values
        // left some undecided.
        assert!(hits.iter().all(|&h| h > 0 && h < n), "{hits:?}");
        assert!(undecided > 20, "{undecided}");
    }

    #[test]
    fn the_most_severe_matching_outcome_wins_and_the_backtest_counts_it() {
        let draft = CompiledPolicy::compile(&Policy {
            outcomes: ["allow", "review", "hold_payouts", "block"]
                .map(String::from)
                .to_vec(),
            rules: vec![
                rule("likely", "probability > 0.5", "review"),
                rule("very likely", "probability > 0.9", "block"),
                rule("new payee", "X19 > 3", "hold_payouts"),
            ],
        })
        .unwrap();
        let live = CompiledPolicy::compile(&policy(vec![rule("p", "probability > 0.5", "block")]))
            .unwrap();
        let mut columns = vec![vec![0.0; 4]; N_FEATURES];
        columns[18] = vec![5.0, 0.0, 5.0, f64::NAN];
        let refs: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        let p = [0.95, 0.6, 0.1, 0.2];
        let s = Signals {
            columns: &refs,
            probability: &p,
            score: &p,
        };
        let m = draft.matches(&s).unwrap();
        assert_eq!(draft.decide(&m, 4), vec![3, 1, 2, 0]);
        // And(Cmp(Probability, Const), ...): what deciding an account costs.
        let one = CompiledPolicy::compile(&policy(vec![rule(
            "a",
            "X1 > 1.0 && probability >= 0.5",
            "review",
        )]))
        .unwrap();
        assert_eq!(one.operations(), 7);
        let first: Vec<f64> = columns.iter().map(|c| c[0]).collect();
        let one = draft.decide_one(&Account {
            values: &first,
            probability: 0.95,
            score: 0.95,
        });
        assert_eq!((one.outcome, one.matched), (3, vec![0, 1, 2]));
        assert_eq!(draft.outcome_name(one.outcome), "block");
        let labels = [Some(1), Some(0), None, Some(1)];
        let b = Backtest::run(&draft, Some(&live), &s, &labels).unwrap();
        assert_eq!((b.accounts, b.labelled, b.spammers), (4, 3, 2));
        let likely = &b.rules[0];
        assert_eq!(
            (likely.hits, likely.spammers_hit, likely.labelled_hits),
            (2, 1, 2)
        );
        assert_eq!((likely.precision, likely.recall), (Some(0.5), Some(0.5)));
        let allow = &b.outcomes[0];
        assert_eq!(
            (allow.outcome.as_str(), allow.accounts, allow.spammers),
            ("allow", 1, 1)
        );
        assert_eq!(
            b.outcomes[2].precision, None,
            "its one account is unlabelled"
        );
        // The live policy blocks rows 0 and 1: row 1 is now sent to review and row 2
        // (allowed live) has its payouts held.
        let changed: Vec<(usize, &str, &str)> = b
            .changed
            .iter()
            .map(|c| (c.row, c.live.as_str(), c.draft.as_str()))
            .collect();
        assert_eq!(
            changed,
            vec![(1, "block", "review"), (2, "allow", "hold_payouts")]
        );
    }
}
