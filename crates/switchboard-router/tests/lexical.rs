//! The lexical router on the demo's five agents.

mod common;

use std::time::Duration;
use switchboard_core::{
    AuthMethod, Caller, ErrorKind, Message, RouteDecision, RoutedCall, Router, RunContext,
};
use switchboard_router::LexicalRouter;

fn router() -> LexicalRouter {
    LexicalRouter::new(&common::demo_agents(), LexicalRouter::DEFAULT_THRESHOLD)
}

/// The agents and inputs of a decision, or the clarification's candidates prefixed with `?`.
fn calls(decision: &RouteDecision) -> Vec<(String, String)> {
    match decision {
        RouteDecision::Agents { calls } => calls.iter().map(|c| (c.agent.clone(), c.input.clone())).collect(),
        RouteDecision::Clarify { candidates, .. } => {
            candidates.iter().map(|c| (format!("?{c}"), String::new())).collect()
        }
    }
}

fn single(decision: &RouteDecision) -> &RoutedCall {
    match decision {
        RouteDecision::Agents { calls } if calls.len() == 1 => &calls[0],
        other => panic!("expected one call, got {other:?}"),
    }
}

#[test]
fn paraphrases_of_the_examples_reach_the_right_agent() {
    let router = router();
    let cases = [
        ("what is the total revenue per region", "sales"),
        ("top 10 deals by amount", "sales"),
        ("what's the margin on our biggest deals", "sales"),
        ("how many deals are in the negotiation stage", "sales"),
        ("bookings by rep for the west", "sales"),
        ("hotel limit for business travel", "policies"),
        ("how do I submit an expense report", "policies"),
        ("what's the per diem in the travel policy", "policies"),
        ("what is the discount policy", "policies"),
        ("who needs to approve a 30% discount on a 75000 deal", "deal_desk"),
        ("what approval is needed for 20% off a 90k deal", "deal_desk"),
        ("who accessed the sales agent this morning", "audit"),
        ("recent access by user alice", "audit"),
        ("list recent denied requests", "audit"),
        ("show my open support tickets", "tickets"),
        ("open a ticket because my laptop is broken", "tickets"),
    ];
    for (question, agent) in cases {
        let decision = router.decide(question, &[]).expect("routes");
        let call = single(&decision);
        assert_eq!(call.agent, agent, "{question}");
        assert_eq!(call.input, question);
        assert!(call.score >= router.threshold() && call.score <= 1.0, "{question}: {}", call.score);
    }
}

#[test]
fn two_intents_for_two_agents_become_two_calls() {
    let decision = router()
        .decide("Total revenue by region, and who must approve a 25% discount on a 40000 deal?", &[])
        .expect("routes");
    assert_eq!(
        calls(&decision),
        [
            ("sales".to_string(), "Total revenue by region".to_string()),
            ("deal_desk".to_string(), "who must approve a 25% discount on a 40000 deal".to_string()),
        ]
    );
}

#[test]
fn conjunctions_within_one_agent_stay_one_call() {
    let question = "total revenue by region and stage";
    let decision = router().decide(question, &[]).expect("routes");
    let call = single(&decision);
    assert_eq!((call.agent.as_str(), call.input.as_str()), ("sales", question));
}

#[test]
fn unconfident_clauses_attach_to_their_neighbour_and_runs_are_joined() {
    let router = router();
    // "the weather on mars" matches nothing: it rides with the tickets clause before it.
    let decision = router
        .decide(
            "Show my open tickets, and the weather on mars; plus who must approve a 25% discount \
             on a 40000 deal",
            &[],
        )
        .expect("routes");
    assert_eq!(
        calls(&decision),
        [
            ("tickets".to_string(), "Show my open tickets, and the weather on mars".to_string()),
            ("deal_desk".to_string(), "who must approve a 25% discount on a 40000 deal".to_string()),
        ]
    );
    // Non-adjacent clauses of one agent are joined; the agent keeps its first-mention position.
    let decision =
        router.decide("revenue by rep; show my open tickets; top 5 deals by amount", &[]).expect("routes");
    assert_eq!(
        calls(&decision),
        [
            ("sales".to_string(), "revenue by rep; top 5 deals by amount".to_string()),
            ("tickets".to_string(), "show my open tickets".to_string()),
        ]
    );
}

#[test]
fn off_topic_questions_get_a_clarifying_question_naming_candidates() {
    let router = router();
    let decision = router.decide("what's the weather on mars", &[]).expect("routes");
    let RouteDecision::Clarify { question, candidates } = decision else {
        panic!("expected a clarification, got {decision:?}");
    };
    assert!(question.starts_with("I'm not sure which assistant can help. Did you mean "));
    assert!((2..=3).contains(&candidates.len()), "{candidates:?}");
    for name in &candidates {
        assert!(question.contains(name.as_str()), "{question} names {name}");
    }
    assert!(question.contains("sales (sales analytics over the deals pipeline)"));

    // Two agents pulling equally hard is no better than none: ask, naming both.
    let decision = router.decide("who accessed the tickets agent yesterday", &[]).expect("routes");
    assert_eq!(calls(&decision), [("?audit".into(), "".into()), ("?tickets".into(), "".into())]);
}

#[test]
fn follow_ups_go_back_to_the_agent_that_answered_last() {
    let router = router();
    let question = "what about the east?";
    let after = |agent: Option<&str>| {
        vec![
            Message::user("total revenue by region"),
            Message::assistant("West 1.2M, East 0.9M", agent.map(str::to_string)),
            Message::user("thanks"),
        ]
    };
    // On its own the question is too vague to route.
    assert!(matches!(router.decide(question, &[]).expect("routes"), RouteDecision::Clarify { .. }));
    let decision = router.decide(question, &after(Some("sales"))).expect("routes");
    assert_eq!(calls(&decision), [("sales".into(), question.into())]);
    // It follows whoever answered, not what the earlier question was about.
    let decision = router.decide(question, &after(Some("policies"))).expect("routes");
    assert_eq!(calls(&decision), [("policies".into(), question.into())]);
    // Unattributed answers and agents that no longer exist give no follow-up.
    for agent in [None, Some("retired_agent")] {
        assert!(
            matches!(router.decide(question, &after(agent)).expect("routes"), RouteDecision::Clarify { .. }),
            "{agent:?}"
        );
    }
    // A confident question is routed on its own merits, whatever came before.
    let decision = router.decide("show my open tickets", &after(Some("sales"))).expect("routes");
    assert_eq!(single(&decision).agent, "tickets");
}

#[test]
fn the_threshold_decides_between_routing_and_asking() {
    let agents = common::demo_agents();
    // "discount" is both a policy topic and the deal desk's business: a real but modest lead.
    let lenient = LexicalRouter::new(&agents, 0.35);
    let (best, confidence) = lenient.best("discount").expect("matches");
    assert_eq!(best, "deal_desk");
    assert!(confidence > 0.35 && confidence < 0.9, "{confidence}");
    assert_eq!(single(&lenient.decide("discount", &[]).expect("routes")).agent, "deal_desk");

    let strict = LexicalRouter::new(&agents, 0.9);
    assert_eq!(
        strict.decide("discount", &[]).expect("routes"),
        RouteDecision::Clarify {
            question: "I'm not sure which assistant can help. Did you mean deal_desk (deal desk \
                       approval rules) or policies (company policy handbook)?"
                .into(),
            candidates: vec!["deal_desk".into(), "policies".into()],
        }
    );
    // Unambiguous questions clear even a strict threshold.
    assert_eq!(single(&strict.decide("show my open tickets", &[]).expect("routes")).agent, "tickets");
    // With no threshold at all, a question no agent shares a word with is still not routed.
    let anything = LexicalRouter::new(&agents, 0.0);
    assert!(matches!(
        anything.decide("what's the weather on mars", &[]).expect("routes"),
        RouteDecision::Clarify { .. }
    ));
}

#[test]
fn scores_rank_every_agent_best_first() {
    let scores = router().scores("who must approve a 25% discount on a 40000 deal");
    assert_eq!(scores.len(), 5);
    assert_eq!(scores[0].0, "deal_desk");
    assert!(scores.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(scores[0].1 > 2.0 * scores[1].1);
    assert!(router().scores("zzz qqq").iter().all(|(_, s)| *s == 0.0));
}

#[tokio::test]
async fn routes_through_the_router_trait() {
    let router: Box<dyn Router> = Box::new(router());
    let caller = Caller::new("u1", "alice@example.com", vec!["west_sales".into()], AuthMethod::Development);
    let ctx = RunContext::new(caller, Duration::from_secs(5));
    let decision = router.route(&ctx, "revenue by rep", &[]).await.expect("routes");
    assert_eq!(single(&decision).agent, "sales");
}

#[test]
fn a_router_without_agents_is_a_configuration_error() {
    let err = LexicalRouter::new(&[], 0.3).decide("anything", &[]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
}
