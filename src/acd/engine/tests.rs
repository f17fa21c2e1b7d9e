//! Unit tests: each strategy and rule on small hand-built cases.

use uuid::Uuid;

use super::*;

pub(super) fn sid(n: u128) -> SkillId {
    SkillId(Uuid::from_u128(0x5000 + n))
}
pub(super) fn qid(n: u128) -> QueueId {
    QueueId(Uuid::from_u128(0x9000 + n))
}
pub(super) fn aid(n: u128) -> AgentId {
    AgentId(Uuid::from_u128(0xa000 + n))
}
pub(super) fn iid(n: u128) -> InteractionId {
    InteractionId(Uuid::from_u128(0x1000_0000 + n))
}

fn req(s: u128, l: Level) -> SkillReq {
    SkillReq {
        skill: sid(s),
        min_level: l,
    }
}

fn agent(n: u128, skills: &[(u128, Level)]) -> AgentConfig {
    let mut a = AgentConfig::new(
        aid(n),
        skills
            .iter()
            .map(|&(s, l)| AgentSkill {
                skill: sid(s),
                level: l,
            })
            .collect(),
    );
    a.wrap_up_ms = Some(0);
    a
}

fn queue(n: u128, strategy: Strategy, reqs: &[(u128, Level)]) -> QueueConfig {
    let mut q = QueueConfig::new(qid(n), strategy);
    q.required = reqs.iter().map(|&(s, l)| req(s, l)).collect();
    q
}

/// An engine with skills 0..5.
fn engine() -> Engine {
    let mut e = Engine::new();
    for s in 0..5 {
        e.upsert_skill(sid(s));
    }
    e
}

fn ok(e: &Engine) {
    if let Err(msg) = e.check_invariants() {
        panic!("invariants broken:\n{msg}");
    }
}

fn add_agent(e: &mut Engine, now: Millis, a: AgentConfig) {
    let id = a.id;
    e.upsert_agent(now, a).unwrap();
    e.set_presence(now, id, Presence::Available).unwrap();
    ok(e);
}

fn arrive(e: &mut Engine, now: Millis, i: u128, q: u128, c: Channel) -> Vec<Action> {
    let acts = e.arrive(now, Arrival::new(iid(i), qid(q), c)).unwrap();
    ok(e);
    acts
}

fn offers(acts: &[Action]) -> Vec<(InteractionId, Vec<AgentId>)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Offer {
                interaction,
                agents,
                ..
            } => Some((*interaction, agents.clone())),
            _ => None,
        })
        .collect()
}

fn decision(acts: &[Action]) -> Decision {
    acts.iter()
        .find_map(|a| match a {
            Action::Offer { decision, .. } => Some((**decision).clone()),
            _ => None,
        })
        .expect("an offer")
}

/// Agents 1..=n available one after another (agent 1 idle longest).
fn staffed(strategy: Strategy, n: u128) -> Engine {
    let mut e = engine();
    e.upsert_queue(0, queue(1, strategy, &[(0, 1)])).unwrap();
    for a in 1..=n {
        add_agent(&mut e, a as Millis * 10, agent(a, &[(0, a as Level)]));
    }
    e
}

#[test]
fn longest_idle_picks_the_agent_free_the_longest() {
    let mut e = staffed(Strategy::LongestIdle, 3);
    let acts = arrive(&mut e, 100, 1, 1, Channel::Voice);
    assert_eq!(offers(&acts), vec![(iid(1), vec![aid(1)])]);
    let d = decision(&acts);
    assert_eq!(d.strategy, Strategy::LongestIdle);
    assert_eq!(d.trigger, Trigger::InteractionWaiting);
    assert_eq!(d.eligible_free, 3);
    assert_eq!(d.winners, vec![aid(1)]);
    let order: Vec<_> = d.candidates.iter().map(|c| c.agent).collect();
    assert_eq!(order, vec![aid(1), aid(2), aid(3)]);
    assert_eq!(d.candidates[0].idle_ms, 90);
    assert!(d.candidates[0].score > d.candidates[1].score);
    // Agent 1 handles and finishes: now agent 2 is idle longest.
    e.accept(110, aid(1), iid(1)).unwrap();
    e.hang_up(120, iid(1)).unwrap();
    ok(&e);
    let acts = arrive(&mut e, 130, 2, 1, Channel::Voice);
    assert_eq!(offers(&acts), vec![(iid(2), vec![aid(2)])]);
}

#[test]
fn least_occupied_picks_fewest_interactions() {
    let mut e = engine();
    let mut q = queue(1, Strategy::LeastOccupied, &[(0, 1)]);
    q.channels = vec![Channel::Chat];
    e.upsert_queue(0, q).unwrap();
    for n in 1..=2 {
        let mut a = agent(n, &[(0, 3)]);
        a.capacity = Capacity {
            chat: 3,
            ..Default::default()
        };
        add_agent(&mut e, n as Millis, a);
    }
    // Chats alternate between the two agents as their loads even out.
    let mut got = Vec::new();
    for i in 1..=4 {
        let acts = arrive(&mut e, 10 + i as Millis, i, 1, Channel::Chat);
        let (_, agents) = offers(&acts).pop().unwrap();
        e.accept(20, agents[0], iid(i)).unwrap();
        got.push(agents[0]);
    }
    assert_eq!(got, vec![aid(1), aid(2), aid(1), aid(2)]);
    // Agent 1 ends a chat: it has fewer now, and gets the next.
    e.hang_up(30, iid(1)).unwrap();
    let acts = arrive(&mut e, 40, 5, 1, Channel::Chat);
    let d = decision(&acts);
    assert_eq!(d.winners, vec![aid(1)]);
    assert_eq!(d.candidates[0].load, 1);
    assert_eq!(d.candidates[1].load, 2);
    assert_eq!(d.candidates[0].score, -1);
}

#[test]
fn round_robin_rotates_through_agents_in_order() {
    let mut e = staffed(Strategy::RoundRobin, 3);
    let mut got = Vec::new();
    for i in 1..=5u128 {
        let acts = arrive(&mut e, 100 + i as Millis, i, 1, Channel::Voice);
        let (_, agents) = offers(&acts).pop().unwrap();
        got.push(agents[0]);
        // Free the agent again at once so every agent stays free.
        e.accept(200, agents[0], iid(i)).unwrap();
        e.hang_up(201, iid(i)).unwrap();
    }
    ok(&e);
    assert_eq!(got, vec![aid(1), aid(2), aid(3), aid(1), aid(2)]);
}

#[test]
fn best_proficiency_picks_the_highest_level_sum() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::BestProficiency, &[(0, 1), (1, 1)]))
        .unwrap();
    add_agent(&mut e, 1, agent(1, &[(0, 2), (1, 2)]));
    add_agent(&mut e, 2, agent(2, &[(0, 5), (1, 4)]));
    add_agent(&mut e, 3, agent(3, &[(0, 5), (1, 1)]));
    add_agent(&mut e, 4, agent(4, &[(0, 5)])); // lacks skill 1
    let acts = arrive(&mut e, 10, 1, 1, Channel::Voice);
    let d = decision(&acts);
    assert_eq!(d.winners, vec![aid(2)]);
    assert_eq!(d.eligible_free, 3);
    let scores: Vec<_> = d.candidates.iter().map(|c| (c.agent, c.score)).collect();
    assert_eq!(scores, vec![(aid(2), 9), (aid(3), 6), (aid(1), 4)]);
}

#[test]
fn ring_all_rings_every_free_agent_and_the_first_answer_wins() {
    let mut e = staffed(Strategy::RingAll, 3);
    let acts = arrive(&mut e, 100, 1, 1, Channel::Voice);
    let (_, agents) = offers(&acts).pop().unwrap();
    assert_eq!(agents, vec![aid(1), aid(2), aid(3)]);
    // One rejects: the others still ring.
    let acts = e.reject(101, aid(3), iid(1)).unwrap();
    assert!(acts.is_empty(), "{acts:?}");
    ok(&e);
    let acts = e.accept(102, aid(2), iid(1)).unwrap();
    ok(&e);
    assert!(acts.contains(&Action::OfferWithdrawn {
        interaction: iid(1),
        agent: aid(1),
        reason: WithdrawReason::AnsweredElsewhere
    }));
    assert!(matches!(acts.last(), Some(Action::Connected { agent, .. }) if *agent == aid(2)));
    assert_eq!(
        e.interaction_state(iid(1)),
        Some(InteractionState::Connected {
            queue: qid(1),
            agent: aid(2)
        })
    );
    // Ring-all is for voice: a chat goes to one agent (but these agents
    // have no chat capacity, and the queue takes every channel: it waits).
    let mut q = queue(1, Strategy::RingAll, &[(0, 1)]);
    q.ring_all_max = 2;
    e.upsert_queue(103, q).unwrap();
    let acts = arrive(&mut e, 104, 2, 1, Channel::Voice);
    assert_eq!(offers(&acts)[0].1.len(), 2, "ring_all_max caps the ring");
}

#[test]
fn ring_all_chat_goes_to_one_agent() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::RingAll, &[])).unwrap();
    for n in 1..=3 {
        let mut a = agent(n, &[]);
        a.capacity.chat = 2;
        add_agent(&mut e, n as Millis, a);
    }
    let acts = arrive(&mut e, 10, 1, 1, Channel::Chat);
    assert_eq!(offers(&acts), vec![(iid(1), vec![aid(1)])]);
}

#[test]
fn freed_agent_takes_queue_priority_then_interaction_priority_then_oldest() {
    let mut e = engine();
    let mut low = queue(1, Strategy::LongestIdle, &[(0, 1)]);
    low.priority = 1;
    let mut high = queue(2, Strategy::LongestIdle, &[(1, 1)]);
    high.priority = 5;
    e.upsert_queue(0, low).unwrap();
    e.upsert_queue(0, high).unwrap();
    // An agent exists (so the queues are servable) but is offline.
    e.upsert_agent(0, agent(1, &[(0, 1), (1, 1)])).unwrap();
    arrive(&mut e, 10, 1, 1, Channel::Voice); // low queue, oldest
    let mut vip = Arrival::new(iid(2), qid(1), Channel::Voice);
    vip.priority = 3;
    e.arrive(20, vip).unwrap();
    arrive(&mut e, 30, 3, 2, Channel::Voice); // high queue, newest
    arrive(&mut e, 40, 4, 2, Channel::Voice);
    let mut got = Vec::new();
    let acts = e.set_presence(50, aid(1), Presence::Available).unwrap();
    ok(&e);
    let d = decision(&acts);
    assert_eq!(d.trigger, Trigger::AgentAvailable);
    assert_eq!(d.winners, vec![aid(1)]);
    got.push(d.interaction);
    for t in 0..3 {
        let i = got[t];
        e.accept(60 + t as Millis, aid(1), i).unwrap();
        let acts = e.hang_up(70 + t as Millis, i).unwrap();
        ok(&e);
        if let Some((next, _)) = offers(&acts).pop() {
            got.push(next);
        }
    }
    assert_eq!(got, vec![iid(3), iid(4), iid(2), iid(1)]);
}

#[test]
fn reject_keeps_the_place_and_the_agent_is_not_offered_it_again() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::LongestIdle, &[]))
        .unwrap();
    e.upsert_agent(0, agent(1, &[])).unwrap();
    e.upsert_agent(0, agent(2, &[])).unwrap();
    for i in 1..=3 {
        arrive(&mut e, i as Millis, i, 1, Channel::Voice);
    }
    assert_eq!(e.position(iid(1)).unwrap().place, 1);
    let acts = e.set_presence(10, aid(1), Presence::Available).unwrap();
    assert_eq!(offers(&acts), vec![(iid(1), vec![aid(1)])]);
    assert_eq!(e.position(iid(2)).unwrap().place, 1);
    // Agent 1 rejects: interaction 1 is first again; agent 1 gets the next one.
    let acts = e.reject(11, aid(1), iid(1)).unwrap();
    ok(&e);
    assert!(acts.contains(&Action::Requeued {
        interaction: iid(1),
        queue: qid(1),
        reason: RequeueReason::Rejected
    }));
    assert_eq!(offers(&acts), vec![(iid(2), vec![aid(1)])]);
    let p = e.position(iid(1)).unwrap();
    assert_eq!((p.place, p.waiting), (1, 2));
    assert_eq!(e.position(iid(3)).unwrap().place, 2);
    // Agent 2 comes: interaction 1 (its place kept) goes first.
    let acts = e.set_presence(12, aid(2), Presence::Available).unwrap();
    assert_eq!(offers(&acts), vec![(iid(1), vec![aid(2)])]);
    ok(&e);
}

#[test]
fn rejecting_agent_stays_available_and_a_lone_rejected_interaction_waits() {
    let mut e = engine();
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.max_wait_ms = Some(60_000);
    q.overflow = Some(OverflowTarget::Flow("voicemail".into()));
    e.upsert_queue(0, q).unwrap();
    add_agent(&mut e, 0, agent(1, &[]));
    arrive(&mut e, 1, 1, 1, Channel::Voice);
    e.reject(2, aid(1), iid(1)).unwrap();
    ok(&e);
    assert_eq!(e.agent_snapshot(aid(1)).unwrap().status, AgentStatus::Idle);
    assert!(matches!(
        e.interaction_state(iid(1)),
        Some(InteractionState::Waiting { .. })
    ));
    // ...until its maximum wait sends it to the flow.
    assert_eq!(e.next_deadline(), Some(60_001));
    let acts = e.tick(60_001);
    ok(&e);
    assert_eq!(
        acts,
        vec![Action::Overflowed {
            interaction: iid(1),
            from: qid(1),
            to: OverflowTarget::Flow("voicemail".into()),
            reason: OverflowReason::MaxWait
        }]
    );
    assert_eq!(e.interaction_state(iid(1)), None);
}

#[test]
fn offer_timeout_sets_the_agent_away_and_requeues_at_the_original_place() {
    let mut e = engine();
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.offer_timeout_ms = 10_000;
    e.upsert_queue(0, q).unwrap();
    e.upsert_agent(0, agent(1, &[])).unwrap();
    e.upsert_agent(0, agent(2, &[])).unwrap();
    arrive(&mut e, 1, 1, 1, Channel::Voice);
    arrive(&mut e, 2, 2, 1, Channel::Voice);
    e.set_presence(3, aid(1), Presence::Available).unwrap();
    assert_eq!(e.next_deadline(), Some(10_003));
    // Nothing happens before the deadline.
    assert!(e.tick(10_002).is_empty());
    let acts = e.tick(10_003);
    ok(&e);
    assert!(acts.contains(&Action::AgentAway {
        agent: aid(1),
        reason: "no_answer".into()
    }));
    assert!(acts.contains(&Action::Requeued {
        interaction: iid(1),
        queue: qid(1),
        reason: RequeueReason::NoAnswer
    }));
    assert_eq!(e.position(iid(1)).unwrap().place, 1);
    let snap = e.agent_snapshot(aid(1)).unwrap();
    assert_eq!(
        snap.presence,
        Presence::Away {
            reason: "no_answer".into()
        }
    );
    assert_eq!(snap.consecutive_no_answers, 1);
    assert!(snap.offers.is_empty());
    // Accepting after the timeout is refused.
    assert_eq!(
        e.accept(10_004, aid(1), iid(1)),
        Err(EngineError::NotOffered {
            agent: aid(1),
            interaction: iid(1)
        })
    );
    // Agent 2 arrives and takes interaction 1 first.
    let acts = e.set_presence(10_005, aid(2), Presence::Available).unwrap();
    assert_eq!(offers(&acts), vec![(iid(1), vec![aid(2)])]);
}

#[test]
fn max_no_answers_allows_some_misses_before_away() {
    let mut e = engine();
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.offer_timeout_ms = 1_000;
    e.upsert_queue(0, q).unwrap();
    let mut a = agent(1, &[]);
    a.max_no_answers = 2;
    add_agent(&mut e, 0, a);
    arrive(&mut e, 0, 1, 1, Channel::Voice);
    arrive(&mut e, 0, 2, 1, Channel::Voice);
    // First miss: still available, and offered the next interaction (not the missed one).
    let acts = e.tick(1_000);
    ok(&e);
    assert!(!acts.iter().any(|a| matches!(a, Action::AgentAway { .. })));
    assert_eq!(offers(&acts), vec![(iid(2), vec![aid(1)])]);
    // Second consecutive miss: away.
    let acts = e.tick(2_000);
    ok(&e);
    assert!(acts.contains(&Action::AgentAway {
        agent: aid(1),
        reason: "no_answer".into()
    }));
    // Back, answers: the count resets.
    e.set_presence(3_000, aid(1), Presence::Available).unwrap();
    assert_eq!(e.agent_snapshot(aid(1)).unwrap().consecutive_no_answers, 0);
}

#[test]
fn capacity_per_channel_and_voice_blocking_chats() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::LongestIdle, &[]))
        .unwrap();
    let mut a = agent(1, &[]);
    a.capacity = Capacity {
        voice: 1,
        chat: 2,
        ..Default::default()
    };
    a.voice_blocks_other = true;
    add_agent(&mut e, 0, a);
    assert_eq!(offers(&arrive(&mut e, 1, 1, 1, Channel::Chat)).len(), 1);
    assert_eq!(offers(&arrive(&mut e, 2, 2, 1, Channel::Chat)).len(), 1);
    assert!(
        offers(&arrive(&mut e, 3, 3, 1, Channel::Chat)).is_empty(),
        "third chat waits"
    );
    // A call still comes (chats do not block calls)...
    assert_eq!(offers(&arrive(&mut e, 4, 4, 1, Channel::Voice)).len(), 1);
    let snap = e.agent_snapshot(aid(1)).unwrap();
    assert_eq!((snap.load.voice, snap.load.chat), (1, 2));
    // ...and while it is in hand, a freed chat slot is not filled.
    e.accept(5, aid(1), iid(1)).unwrap();
    let acts = e.hang_up(6, iid(1)).unwrap();
    ok(&e);
    assert!(offers(&acts).is_empty());
    // The call ends: the waiting chat comes.
    e.accept(7, aid(1), iid(4)).unwrap();
    let acts = e.hang_up(8, iid(4)).unwrap();
    ok(&e);
    assert_eq!(offers(&acts), vec![(iid(3), vec![aid(1)])]);

    // Without blocking, the chat would have come during the call.
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::LongestIdle, &[]))
        .unwrap();
    let mut a = agent(1, &[]);
    a.capacity = Capacity {
        voice: 1,
        chat: 1,
        ..Default::default()
    };
    a.voice_blocks_other = false;
    add_agent(&mut e, 0, a);
    arrive(&mut e, 1, 1, 1, Channel::Voice);
    assert_eq!(offers(&arrive(&mut e, 2, 2, 1, Channel::Chat)).len(), 1);
}

#[test]
fn escalation_widens_the_skills_as_the_wait_grows() {
    let mut e = engine();
    let mut q = queue(1, Strategy::LongestIdle, &[(0, 4), (1, 3)]);
    q.escalation = vec![
        EscalationStep {
            after_ms: 30_000,
            required: vec![req(0, 2), req(1, 1)],
        },
        EscalationStep {
            after_ms: 60_000,
            required: vec![req(0, 1)],
        },
    ];
    e.upsert_queue(0, q).unwrap();
    add_agent(&mut e, 0, agent(1, &[(0, 1)])); // only step 2
    add_agent(&mut e, 0, agent(2, &[(0, 3), (1, 2)])); // step 1 on
    arrive(&mut e, 1_000, 1, 1, Channel::Voice);
    assert_eq!(e.position(iid(1)).unwrap().step, 0);
    assert_eq!(e.next_deadline(), Some(31_000));
    let acts = e.tick(31_000);
    ok(&e);
    assert_eq!(
        acts[0],
        Action::Escalated {
            interaction: iid(1),
            queue: qid(1),
            step: 1
        }
    );
    let d = decision(&acts);
    assert_eq!((d.step, d.winners.clone()), (1, vec![aid(2)]));
    assert_eq!(d.required, vec![req(0, 2), req(1, 1)]);
    assert_eq!(d.waited_ms, 30_000);
    // A second interaction waits until step 2 (agent 2 is busy), then agent 1 qualifies.
    e.accept(31_000, aid(2), iid(1)).unwrap();
    arrive(&mut e, 40_000, 2, 1, Channel::Voice);
    let acts = e.tick(99_999);
    assert_eq!(
        acts,
        vec![Action::Escalated {
            interaction: iid(2),
            queue: qid(1),
            step: 1
        }]
    );
    let acts = e.tick(100_000);
    ok(&e);
    let d = decision(&acts);
    assert_eq!((d.step, d.winners.clone()), (2, vec![aid(1)]));
}

#[test]
fn steps_that_do_not_widen_are_refused() {
    let e = engine();
    let mut q = queue(1, Strategy::LongestIdle, &[(0, 2)]);
    q.escalation = vec![EscalationStep {
        after_ms: 10,
        required: vec![req(0, 2), req(1, 1)],
    }];
    assert!(matches!(
        e.check_queue(&q),
        Err(ConfigError::BadEscalation { step: 1, .. })
    ));
    q.escalation = vec![
        EscalationStep {
            after_ms: 10,
            required: vec![req(0, 1)],
        },
        EscalationStep {
            after_ms: 10,
            required: vec![],
        },
    ];
    assert!(matches!(
        e.check_queue(&q),
        Err(ConfigError::BadEscalation { step: 2, .. })
    ));
}

#[test]
fn max_wait_overflows_to_another_queue_keeping_the_place_order() {
    let mut e = engine();
    let mut a = queue(1, Strategy::LongestIdle, &[(0, 5)]);
    a.max_wait_ms = Some(10_000);
    a.overflow = Some(OverflowTarget::Queue(qid(2)));
    let b = queue(2, Strategy::LongestIdle, &[(1, 1)]);
    e.upsert_queue(0, b).unwrap();
    e.upsert_queue(0, a).unwrap();
    e.upsert_agent(0, agent(1, &[(0, 5)])).unwrap();
    e.upsert_agent(0, agent(2, &[(1, 1)])).unwrap();
    arrive(&mut e, 100, 1, 1, Channel::Voice);
    arrive(&mut e, 200, 2, 2, Channel::Voice);
    let acts = e.tick(10_100);
    ok(&e);
    assert_eq!(
        acts,
        vec![Action::Overflowed {
            interaction: iid(1),
            from: qid(1),
            to: OverflowTarget::Queue(qid(2)),
            reason: OverflowReason::MaxWait
        }]
    );
    // It arrived first, so it is ahead of interaction 2 in queue 2.
    assert_eq!(e.position(iid(1)).unwrap().place, 1);
    assert_eq!(e.position(iid(2)).unwrap().place, 2);
    assert_eq!(e.queue_snapshot(qid(1)).unwrap().overflowed, 1);
}

#[test]
fn max_length_overflows_arrivals() {
    let mut e = engine();
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.max_length = Some(1);
    q.overflow = Some(OverflowTarget::Flow("busy".into()));
    e.upsert_queue(0, q).unwrap();
    e.upsert_agent(0, agent(1, &[])).unwrap();
    arrive(&mut e, 1, 1, 1, Channel::Voice);
    let acts = arrive(&mut e, 2, 2, 1, Channel::Voice);
    assert_eq!(
        acts,
        vec![Action::Overflowed {
            interaction: iid(2),
            from: qid(1),
            to: OverflowTarget::Flow("busy".into()),
            reason: OverflowReason::MaxLength
        }]
    );
}

#[test]
fn unservable_queue_is_flagged_and_its_arrivals_overflow() {
    let mut e = engine();
    e.upsert_queue(0, queue(9, Strategy::LongestIdle, &[]))
        .unwrap();
    e.upsert_agent(0, agent(1, &[(0, 2)])).unwrap();
    let mut q = queue(1, Strategy::LongestIdle, &[(0, 3)]);
    q.channels = vec![Channel::Voice, Channel::Chat];
    // Flagged before saving...
    assert_eq!(e.check_queue(&q), Ok(vec![Channel::Voice, Channel::Chat]));
    // ...and on save.
    let acts = e.upsert_queue(1, q.clone()).unwrap();
    assert_eq!(
        acts,
        vec![Action::ServabilityChanged {
            queue: qid(1),
            unservable: vec![Channel::Voice, Channel::Chat]
        }]
    );
    assert_eq!(
        e.unservable_queues(),
        vec![
            (qid(1), vec![Channel::Voice, Channel::Chat]),
            (qid(9), vec![Channel::Chat, Channel::Sms, Channel::Email])
        ]
    );
    // No overflow: the arrival is refused rather than waiting forever.
    assert_eq!(
        e.arrive(2, Arrival::new(iid(1), qid(1), Channel::Voice)),
        Err(EngineError::Unservable(qid(1)))
    );
    assert_eq!(e.interaction_state(iid(1)), None);
    // With an overflow, it goes there at once.
    q.overflow = Some(OverflowTarget::Queue(qid(9)));
    e.upsert_queue(3, q).unwrap();
    let acts = arrive(&mut e, 4, 1, 1, Channel::Voice);
    assert_eq!(
        acts[0],
        Action::Overflowed {
            interaction: iid(1),
            from: qid(1),
            to: OverflowTarget::Queue(qid(9)),
            reason: OverflowReason::Unservable
        }
    );
    // Raising the agent's level makes it servable for voice (capacity) only.
    let acts = e.upsert_agent(5, agent(1, &[(0, 3)])).unwrap();
    assert!(acts.contains(&Action::ServabilityChanged {
        queue: qid(1),
        unservable: vec![Channel::Chat]
    }));
    ok(&e);
}

#[test]
fn a_queue_losing_its_last_server_sends_waiting_interactions_to_overflow() {
    let mut e = engine();
    e.upsert_queue(0, queue(2, Strategy::LongestIdle, &[]))
        .unwrap();
    let mut q = queue(1, Strategy::LongestIdle, &[(0, 1)]);
    q.overflow = Some(OverflowTarget::Queue(qid(2)));
    e.upsert_queue(0, q).unwrap();
    e.upsert_agent(0, agent(1, &[(0, 1)])).unwrap();
    arrive(&mut e, 1, 1, 1, Channel::Voice);
    let acts = e.remove_agent(2, aid(1)).unwrap();
    ok(&e);
    assert!(acts.contains(&Action::Overflowed {
        interaction: iid(1),
        from: qid(1),
        to: OverflowTarget::Queue(qid(2)),
        reason: OverflowReason::Unservable
    }));
}

#[test]
fn bad_configuration_is_refused_with_typed_errors() {
    let mut e = engine();
    let unknown = SkillId(Uuid::from_u128(1));
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.required = vec![SkillReq {
        skill: unknown,
        min_level: 1,
    }];
    assert_eq!(
        e.upsert_queue(0, q),
        Err(ConfigError::UnknownSkill(unknown))
    );
    let q = queue(1, Strategy::LongestIdle, &[(0, 6)]);
    assert_eq!(
        e.upsert_queue(0, q),
        Err(ConfigError::LevelOutOfRange {
            skill: sid(0),
            level: 6
        })
    );
    let q = queue(1, Strategy::LongestIdle, &[(0, 0)]);
    assert!(matches!(
        e.upsert_queue(0, q),
        Err(ConfigError::LevelOutOfRange { level: 0, .. })
    ));
    let q = queue(1, Strategy::LongestIdle, &[(0, 1), (0, 2)]);
    assert_eq!(
        e.upsert_queue(0, q),
        Err(ConfigError::DuplicateSkill(sid(0)))
    );
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.max_wait_ms = Some(1);
    assert_eq!(e.upsert_queue(0, q), Err(ConfigError::MissingOverflow));
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.overflow = Some(OverflowTarget::Queue(qid(7)));
    assert_eq!(e.upsert_queue(0, q), Err(ConfigError::UnknownQueue(qid(7))));
    assert_eq!(
        e.upsert_agent(0, agent(1, &[(0, 9)])),
        Err(ConfigError::LevelOutOfRange {
            skill: sid(0),
            level: 9
        })
    );
    assert_eq!(
        e.remove_agent(0, aid(1)),
        Err(ConfigError::UnknownAgent(aid(1)))
    );
    assert_eq!(
        e.remove_queue(0, qid(1)),
        Err(ConfigError::UnknownQueue(qid(1)))
    );
    assert_eq!(
        "sometimes".parse::<Strategy>(),
        Err(ConfigError::UnknownStrategy("sometimes".into()))
    );
    assert_eq!("fewest_interactions".parse(), Ok(Strategy::LeastOccupied));
    // Nothing was created by the refusals.
    assert_eq!(e.counts().queues, 0);
    assert_eq!(e.counts().agents, 0);
}

#[test]
fn overflow_cycles_are_refused() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::LongestIdle, &[]))
        .unwrap();
    let mut b = queue(2, Strategy::LongestIdle, &[]);
    b.overflow = Some(OverflowTarget::Queue(qid(1)));
    e.upsert_queue(0, b).unwrap();
    let mut c = queue(3, Strategy::LongestIdle, &[]);
    c.overflow = Some(OverflowTarget::Queue(qid(2)));
    e.upsert_queue(0, c).unwrap();
    // 1 -> 3 -> 2 -> 1
    let mut a = queue(1, Strategy::LongestIdle, &[]);
    a.overflow = Some(OverflowTarget::Queue(qid(3)));
    assert_eq!(
        e.upsert_queue(0, a),
        Err(ConfigError::OverflowCycle(vec![
            qid(1),
            qid(3),
            qid(2),
            qid(1)
        ]))
    );
    let mut selfloop = queue(4, Strategy::LongestIdle, &[]);
    selfloop.overflow = Some(OverflowTarget::Queue(qid(4)));
    assert!(matches!(
        e.upsert_queue(0, selfloop),
        Err(ConfigError::OverflowCycle(_))
    ));
    // A queue others overflow into cannot be removed.
    assert_eq!(
        e.remove_queue(0, qid(1)),
        Err(ConfigError::QueueInUse {
            queue: qid(1),
            by: qid(2)
        })
    );
    // An overflow target must take the source's channels.
    let mut chat_only = queue(5, Strategy::LongestIdle, &[]);
    chat_only.channels = vec![Channel::Chat];
    e.upsert_queue(0, chat_only).unwrap();
    let mut d = queue(6, Strategy::LongestIdle, &[]);
    d.overflow = Some(OverflowTarget::Queue(qid(5)));
    assert_eq!(
        e.upsert_queue(0, d),
        Err(ConfigError::OverflowChannels {
            from: qid(6),
            to: qid(5)
        })
    );
    ok(&e);
}

#[test]
fn unknown_agents_and_interactions_are_typed_errors() {
    let mut e = staffed(Strategy::LongestIdle, 1);
    assert_eq!(
        e.set_presence(0, aid(99), Presence::Available),
        Err(EngineError::UnknownAgent(aid(99)))
    );
    assert_eq!(
        e.hang_up(0, iid(99)),
        Err(EngineError::UnknownInteraction(iid(99)))
    );
    assert_eq!(
        e.accept(0, aid(1), iid(99)),
        Err(EngineError::UnknownInteraction(iid(99)))
    );
    assert_eq!(
        e.arrive(0, Arrival::new(iid(1), qid(99), Channel::Voice)),
        Err(EngineError::UnknownQueue(qid(99)))
    );
    assert_eq!(
        e.end_wrap_up(0, aid(1)),
        Err(EngineError::NotInWrapUp(aid(1)))
    );
    arrive(&mut e, 100, 1, 1, Channel::Voice);
    assert_eq!(
        e.arrive(100, Arrival::new(iid(1), qid(1), Channel::Voice)),
        Err(EngineError::DuplicateInteraction(iid(1)))
    );
    let mut x = Arrival::new(iid(2), qid(1), Channel::Chat);
    x.extra_skills = vec![req(3, 8)];
    assert_eq!(
        e.arrive(100, x),
        Err(EngineError::LevelOutOfRange {
            skill: sid(3),
            level: 8
        })
    );
    let mut q = queue(1, Strategy::LongestIdle, &[(0, 1)]);
    q.channels = vec![Channel::Voice];
    e.upsert_queue(100, q).unwrap();
    assert_eq!(
        e.arrive(100, Arrival::new(iid(3), qid(1), Channel::Email)),
        Err(EngineError::ChannelNotAccepted {
            queue: qid(1),
            channel: Channel::Email
        })
    );
    ok(&e);
}

#[test]
fn wrap_up_ends_by_timeout_or_by_the_agent() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::LongestIdle, &[]))
        .unwrap();
    let mut a = agent(1, &[]);
    a.wrap_up_ms = Some(5_000);
    add_agent(&mut e, 0, a);
    arrive(&mut e, 10, 1, 1, Channel::Voice);
    e.accept(20, aid(1), iid(1)).unwrap();
    let acts = e.hang_up(1_020, iid(1)).unwrap();
    assert_eq!(
        acts,
        vec![
            Action::Ended {
                interaction: iid(1),
                agent: aid(1),
                handled_ms: 1_000
            },
            Action::WrapUpStarted {
                agent: aid(1),
                interaction: iid(1),
                until: Some(6_020)
            }
        ]
    );
    assert_eq!(
        e.agent_snapshot(aid(1)).unwrap().status,
        AgentStatus::WrapUp
    );
    // A call arriving during wrap-up waits, then comes when it ends.
    arrive(&mut e, 2_000, 2, 1, Channel::Voice);
    assert_eq!(e.next_deadline(), Some(6_020));
    let acts = e.tick(6_020);
    ok(&e);
    assert_eq!(
        acts[0],
        Action::WrapUpEnded {
            agent: aid(1),
            interaction: iid(1)
        }
    );
    assert_eq!(offers(&acts), vec![(iid(2), vec![aid(1)])]);
    // Manual wrap-up.
    let mut a = agent(1, &[]);
    a.wrap_up_ms = None;
    e.upsert_agent(6_021, a).unwrap();
    e.accept(6_022, aid(1), iid(2)).unwrap();
    e.hang_up(6_023, iid(2)).unwrap();
    assert_eq!(e.next_deadline(), None);
    arrive(&mut e, 6_024, 3, 1, Channel::Voice);
    let acts = e.end_wrap_up(9_000, aid(1)).unwrap();
    ok(&e);
    assert_eq!(offers(&acts), vec![(iid(3), vec![aid(1)])]);
    let d = decision(&acts);
    assert_eq!(d.trigger, Trigger::AgentAvailable);
    assert_eq!(d.waited_ms, 9_000 - 6_024);
}

#[test]
fn callbacks_keep_the_callers_place_and_have_no_maximum_wait() {
    let mut e = engine();
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.max_wait_ms = Some(1_000);
    q.overflow = Some(OverflowTarget::Flow("voicemail".into()));
    e.upsert_queue(0, q).unwrap();
    e.upsert_agent(0, agent(1, &[])).unwrap();
    arrive(&mut e, 100, 1, 1, Channel::Voice);
    // A callback restored with its original enqueue time goes ahead.
    let mut cb = Arrival::new(iid(2), qid(1), Channel::Voice);
    cb.enqueued_at = Some(50);
    cb.callback = true;
    e.arrive(200, cb).unwrap();
    ok(&e);
    assert_eq!(e.position(iid(2)).unwrap().place, 1);
    assert_eq!(e.position(iid(1)).unwrap().place, 2);
    // A waiting caller opts for a callback: same place, no max wait.
    e.to_callback(300, iid(1)).unwrap();
    assert_eq!(e.position(iid(1)).unwrap().place, 2);
    assert_eq!(e.next_deadline(), None);
    assert!(e.tick(5_000).is_empty());
    let acts = e.set_presence(5_000, aid(1), Presence::Available).unwrap();
    assert!(matches!(
        &acts[0],
        Action::Offer { interaction, callback: true, .. } if *interaction == iid(2)
    ));
    ok(&e);
}

#[test]
fn position_and_estimated_wait() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::LongestIdle, &[]))
        .unwrap();
    add_agent(&mut e, 0, agent(1, &[]));
    // Two answers 60 s apart give the queue its pace.
    for (i, t) in [(1u128, 0u64), (2, 60_000)] {
        arrive(&mut e, t, i, 1, Channel::Voice);
        e.accept(t, aid(1), iid(i)).unwrap();
        e.hang_up(t + 1, iid(i)).unwrap();
    }
    arrive(&mut e, 70_000, 3, 1, Channel::Voice);
    e.accept(70_000, aid(1), iid(3)).unwrap();
    for i in 4..=6 {
        arrive(&mut e, 70_001, i, 1, Channel::Voice);
    }
    let p = e.position(iid(6)).unwrap();
    assert_eq!((p.place, p.waiting), (3, 3));
    let gap = (4 * 60_000 + 10_000) / 5;
    assert_eq!(p.estimated_wait_ms, Some(3 * gap));
    assert_eq!(e.position(iid(3)), None, "connected: no place");
    let s = e.queue_snapshot(qid(1)).unwrap();
    assert_eq!((s.waiting, s.answered, s.arrived), (3, 3, 6));
    assert_eq!(s.oldest_enqueued_at, Some(70_001));
}

#[test]
fn hang_up_while_offered_withdraws_and_abandons() {
    let mut e = staffed(Strategy::LongestIdle, 1);
    arrive(&mut e, 10, 1, 1, Channel::Voice);
    let acts = e.hang_up(15, iid(1)).unwrap();
    ok(&e);
    assert_eq!(
        acts,
        vec![
            Action::OfferWithdrawn {
                interaction: iid(1),
                agent: aid(1),
                reason: WithdrawReason::HungUp
            },
            Action::Abandoned {
                interaction: iid(1),
                queue: qid(1),
                waited_ms: 5
            }
        ]
    );
    assert_eq!(e.agent_snapshot(aid(1)).unwrap().status, AgentStatus::Idle);
    assert_eq!(e.queue_snapshot(qid(1)).unwrap().abandoned, 1);
}

#[test]
fn going_away_withdraws_offers_back_to_their_place() {
    let mut e = staffed(Strategy::LongestIdle, 1);
    arrive(&mut e, 10, 1, 1, Channel::Voice);
    arrive(&mut e, 11, 2, 1, Channel::Voice);
    let acts = e
        .set_presence(
            12,
            aid(1),
            Presence::Away {
                reason: "lunch".into(),
            },
        )
        .unwrap();
    ok(&e);
    assert!(acts.contains(&Action::Requeued {
        interaction: iid(1),
        queue: qid(1),
        reason: RequeueReason::Withdrawn
    }));
    assert_eq!(e.position(iid(1)).unwrap().place, 1);
    // Not declined: offered again to the same agent when back.
    let acts = e.set_presence(13, aid(1), Presence::Available).unwrap();
    assert_eq!(offers(&acts), vec![(iid(1), vec![aid(1)])]);
}

#[test]
fn extra_skills_narrow_the_agents() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::LongestIdle, &[(0, 1)]))
        .unwrap();
    add_agent(&mut e, 0, agent(1, &[(0, 1)]));
    add_agent(&mut e, 1, agent(2, &[(0, 1), (4, 3)]));
    let mut x = Arrival::new(iid(1), qid(1), Channel::Voice);
    x.extra_skills = vec![req(4, 2)];
    let acts = e.arrive(5, x).unwrap();
    ok(&e);
    let d = decision(&acts);
    assert_eq!(d.winners, vec![aid(2)]);
    assert_eq!(d.required, vec![req(0, 1), req(4, 2)]);
    // An extra skill nobody has, in a queue without overflow: refused.
    let mut x = Arrival::new(iid(2), qid(1), Channel::Voice);
    x.extra_skills = vec![req(3, 1)];
    assert_eq!(e.arrive(6, x), Err(EngineError::Unservable(qid(1))));
}

#[test]
fn removing_a_queue_sends_its_interactions_to_the_overflow() {
    let mut e = engine();
    e.upsert_queue(0, queue(2, Strategy::LongestIdle, &[]))
        .unwrap();
    let mut q = queue(1, Strategy::LongestIdle, &[]);
    q.overflow = Some(OverflowTarget::Queue(qid(2)));
    e.upsert_queue(0, q).unwrap();
    add_agent(&mut e, 0, agent(1, &[]));
    arrive(&mut e, 1, 1, 1, Channel::Voice); // offered
    arrive(&mut e, 2, 2, 1, Channel::Voice); // waiting
    let acts = e.remove_queue(3, qid(1)).unwrap();
    ok(&e);
    let overflowed = acts
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Overflowed {
                    reason: OverflowReason::QueueRemoved,
                    ..
                }
            )
        })
        .count();
    assert_eq!(overflowed, 2);
    // Interaction 1 is offered again, now from queue 2.
    assert!(matches!(
        e.interaction_state(iid(1)),
        Some(InteractionState::Offered { queue, .. }) if queue == qid(2)
    ));
    assert!(e.queue_snapshot(qid(1)).is_none());
}

#[test]
fn agents_with_work_cannot_be_removed_and_lowered_capacity_withdraws_offers() {
    let mut e = engine();
    e.upsert_queue(0, queue(1, Strategy::LongestIdle, &[]))
        .unwrap();
    let mut a = agent(1, &[]);
    a.capacity = Capacity {
        chat: 3,
        ..Default::default()
    };
    add_agent(&mut e, 0, a.clone());
    for i in 1..=3 {
        arrive(&mut e, i as Millis, i, 1, Channel::Chat);
    }
    e.accept(5, aid(1), iid(1)).unwrap();
    assert_eq!(
        e.remove_agent(6, aid(1)),
        Err(ConfigError::AgentBusy(aid(1)))
    );
    a.capacity.chat = 1;
    let acts = e.upsert_agent(7, a).unwrap();
    ok(&e);
    let withdrawn: Vec<_> = acts
        .iter()
        .filter_map(|a| match a {
            Action::OfferWithdrawn {
                interaction,
                reason: WithdrawReason::ConfigChanged,
                ..
            } => Some(*interaction),
            _ => None,
        })
        .collect();
    assert_eq!(withdrawn, vec![iid(3), iid(2)]);
    assert_eq!(e.position(iid(2)).unwrap().place, 1);
}

#[test]
fn decisions_serialise_for_the_log() {
    let mut e = staffed(Strategy::BestProficiency, 2);
    let acts = arrive(&mut e, 100, 1, 1, Channel::Voice);
    let d = decision(&acts);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["strategy"], "best_proficiency");
    assert_eq!(v["trigger"], "interaction_waiting");
    assert_eq!(v["channel"], "voice");
    assert_eq!(v["winners"][0], aid(2).to_string());
    assert_eq!(v["candidates"][0]["score"], 2);
    assert_eq!(v["candidates"][1]["agent"], aid(1).to_string());
    let a = serde_json::to_value(&acts[0]).unwrap();
    assert_eq!(a["action"], "offer");
    assert_eq!(a["expires_at"], 100 + 15_000);
}

#[test]
fn the_clock_never_goes_back_and_due_timers_run_before_events() {
    let mut e = staffed(Strategy::LongestIdle, 1);
    arrive(&mut e, 1_000, 1, 1, Channel::Voice);
    // The offer timed out at 16 s; an accept at 20 s finds it gone (and
    // reports the timeout's actions with the refusal's next call).
    assert!(e.accept(20_000, aid(1), iid(1)).is_err());
    let buffered = e.take_actions();
    assert!(buffered.contains(&Action::AgentAway {
        agent: aid(1),
        reason: "no_answer".into()
    }));
    // An earlier `now` counts as the latest seen.
    e.set_presence(5, aid(1), Presence::Available).unwrap();
    assert_eq!(e.now(), 20_000);
    let s = e.interaction_state(iid(1));
    assert!(
        matches!(
            s,
            Some(InteractionState::Offered {
                expires_at: 35_000,
                ..
            })
        ),
        "{s:?}"
    );
    ok(&e);
}

#[test]
fn id_hashes_spread_sequential_ids_over_the_low_bits() {
    use std::hash::BuildHasher;
    let b = std::hash::BuildHasherDefault::<super::state::IdHasher>::default();
    // Ids that differ only in their last bytes (and in their first bytes, as
    // UUIDv7 timestamps do) must land in many buckets of a small table.
    for base in [0u128, 0x0190_0000_0000_7000_8000_0000_0000_0000] {
        let buckets: std::collections::BTreeSet<u64> = (0..1024u128)
            .map(|n| b.hash_one(InteractionId(Uuid::from_u128(base + n))) & 1023)
            .collect();
        assert!(
            buckets.len() > 500,
            "only {} of 1024 buckets used",
            buckets.len()
        );
    }
}

#[test]
fn packed_free_keys_order_as_the_strategies_say() {
    use super::state::{free_key, key_slot};
    // (idle_since, load, score, seq, slot)
    let k = |s, idle, load, score, seq, slot| free_key(s, idle, load, score, seq, slot);
    let li = Strategy::LongestIdle;
    assert!(
        k(li, 100, 9, 0, 9, 9) < k(li, 200, 0, 0, 1, 1),
        "longer idle first"
    );
    assert!(
        k(li, 100, 0, 0, 1, 9) < k(li, 100, 0, 0, 2, 1),
        "ties: older agent first"
    );
    let lo = Strategy::LeastOccupied;
    assert!(
        k(lo, 1_700_000_000_000, 1, 0, 9, 9) < k(lo, 100, 2, 0, 1, 1),
        "fewer first"
    );
    assert!(
        k(lo, 100, 1, 0, 9, 9) < k(lo, 200, 1, 0, 1, 1),
        "ties: longer idle"
    );
    let bp = Strategy::BestProficiency;
    assert!(
        k(bp, 1_700_000_000_000, 0, 9, 9, 9) < k(bp, 100, 0, 8, 1, 1),
        "higher score first"
    );
    assert!(
        k(bp, 100, 0, 8, 9, 9) < k(bp, 200, 0, 8, 1, 1),
        "ties: longer idle"
    );
    let rr = Strategy::RoundRobin;
    assert!(
        k(rr, 900, 9, 0, 1, 9) < k(rr, 100, 0, 0, 2, 1),
        "creation order only"
    );
    assert_eq!(key_slot(k(li, u64::MAX, 3, 7, u64::MAX, 12345)), 12345);
}
