"""One pass of a dataflow job: tasks wait for their inputs, bytes queue on shared links."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sedma.errors import SedmaError
from sedma.runtime.cost import Resource, Route, Transfer, network_of, share_links
from sedma.runtime.schedule import simulate_pass
from sedma.runtime.tasks import Dep, Fetch, NodeModel, Task, repeat_passes
from sedma.spec_load import load_cluster

GF = 1e9
NODES = {
    "a": NodeModel(rate_gflops=10.0, mem_bandwidth_gbs=100.0),
    "b": NodeModel(rate_gflops=10.0, mem_bandwidth_gbs=100.0),
}
LINK: Resource = ("wan", "a", "b")
CAP = {LINK: 80e6}  # 10 MB/s
AB = Route((LINK,), 0.01)


def test_tasks_on_one_node_run_one_at_a_time_in_priority_order() -> None:
    tasks = [Task("a", 10 * GF, priority=2), Task("a", 10 * GF, priority=1)]
    s = simulate_pass(tasks, NODES, CAP)
    assert s.start_s == (1.0, 0.0) and s.end_s == (2.0, 1.0)
    assert s.span_s == 2.0 and s.busy_s == {"a": 2.0}
    assert s.node_utilization() == {"a": 1.0}


def test_a_consumer_waits_for_its_input_to_cross_the_link() -> None:
    tasks = [Task("a", 10 * GF), Task("b", 10 * GF, deps=(Dep(0, 5e6, AB),))]
    s = simulate_pass(tasks, NODES, CAP)
    # producer ends at 1 s; 5 MB at 10 MB/s take 0.5 s, then one RTT (10 ms)
    assert s.start_s[1] == pytest.approx(1.51)
    assert s.span_s == pytest.approx(2.51)
    (p, c, _, arrival) = s.transfers[0]
    assert (p, c) == (0, 1) and arrival == pytest.approx(1.51)
    assert s.link_utilization(CAP)[LINK] == pytest.approx(0.5 / 2.51)


def test_same_node_inputs_are_free() -> None:
    tasks = [Task("a", 10 * GF), Task("a", 10 * GF, deps=(Dep(0, 5e9),))]
    s = simulate_pass(tasks, NODES, CAP)
    assert s.start_s[1] == 1.0 and s.transfers == ()


def test_two_outputs_on_one_link_share_it() -> None:
    tasks = [
        Task("a", 10 * GF),
        Task("b", 1 * GF, deps=(Dep(0, 5e6, AB),)),
        Task("b", 1 * GF, deps=(Dep(0, 5e6, AB),)),
    ]
    s = simulate_pass(tasks, NODES, CAP)
    # both 5 MB leave at 1 s and share 10 MB/s: both arrive at 2 s + RTT
    assert sorted(s.start_s[1:]) == pytest.approx([2.01, 2.11])


def test_memory_bound_tasks_take_their_bytes_over_the_bandwidth() -> None:
    s = simulate_pass([Task("a", 1.0, streamed_bytes=50e9)], NODES, CAP)
    assert s.span_s == pytest.approx(0.5)


def test_dispatch_overhead_is_charged_per_task() -> None:
    nodes = {"a": NodeModel(10.0, 100.0, dispatch_s=0.25)}
    s = simulate_pass([Task("a", 10 * GF), Task("a", 10 * GF)], nodes, {})
    assert s.span_s == pytest.approx(2.5)


def test_the_driver_s_own_work_runs_beside_a_busy_node_s_worker() -> None:
    # The driver hands pass 2 its input the moment it may, though the node's worker is busy
    # with earlier work of lower priority; and it keeps the node no busier.
    nodes = {"a": NodeModel(10.0, 100.0, dispatch_s=0.25)}
    tasks = [
        Task("a", 10 * GF, priority=1),
        Task("a", 10 * GF, priority=2),
        Task("a", 0.0, priority=9, on_driver=True),  # the next pass's input
        Task("a", 10 * GF, priority=9, deps=(Dep(2, 0.0),)),
    ]
    s = simulate_pass(tasks, nodes, {})
    assert (s.start_s[2], s.end_s[2]) == (0.0, 0.25)
    assert s.busy_s == {"a": pytest.approx(3 * 1.25)}
    # as a task of the worker's it would have waited for both others to end
    s = simulate_pass([*tasks[:2], Task("a", 0.0, priority=9), tasks[3]], nodes, {})
    assert s.start_s[2] == pytest.approx(2.5)


def test_a_cycle_is_an_error_naming_the_tasks() -> None:
    tasks = [Task("a", 1.0, deps=(Dep(1, 0.0),)), Task("a", 1.0, deps=(Dep(0, 0.0),))]
    with pytest.raises(SedmaError, match="cycle"):
        simulate_pass(tasks, NODES, CAP)


def test_unknown_nodes_and_links_are_errors() -> None:
    with pytest.raises(SedmaError, match="no model"):
        simulate_pass([Task("z", 1.0)], NODES, CAP)
    bad = Route((("wan", "x", "y"),), 0.0)
    with pytest.raises(SedmaError, match="no capacity"):
        simulate_pass([Task("a", 1.0), Task("b", 1.0, deps=(Dep(0, 1.0, bad),))], NODES, CAP)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["gpu", "cpu-0", "cpu-1", "rram", "edge", None]),
            st.floats(1e6, 1e10),
            st.floats(0.0, 1e8),
        ),
        min_size=1,
        max_size=14,
    ),
    st.randoms(use_true_random=False),
)
def test_no_node_or_link_is_ever_over_full_and_inputs_come_first(
    specs: list[tuple[str | None, float, float]], rnd: object
) -> None:
    spec = load_cluster("small")
    net = network_of(spec)
    nodes = {
        n.name: NodeModel(n.device.matmul_gflops, n.device.mem_bandwidth_gbs, 1e-4)
        for n in spec.nodes
    }
    tasks: list[Task] = []
    for i, (node, flops, out_bytes) in enumerate(specs):
        deps = []
        for j in range(i):  # a DAG: each task may read any earlier one's output
            if rnd.random() < 0.3:  # type: ignore[attr-defined]
                producer = tasks[j].node
                if producer is None or node is None:  # chosen when placed
                    deps.append(Dep(j, out_bytes, None))
                    continue
                route = net.route((producer, node)) if producer != node else Route((), 0.0)
                deps.append(Dep(j, out_bytes, route))
        tasks.append(Task(node, flops, deps=tuple(deps), priority=i))
    s = simulate_pass(tasks, nodes, net.capacity_bps, lambda a, b: net.route((a, b)))
    assert all(u <= 1 + 1e-9 for u in s.node_utilization().values())
    assert all(t.node in (None, s.node[i]) for i, t in enumerate(tasks))
    assert all(u <= 1 + 1e-6 for u in s.link_utilization(net.capacity_bps).values())
    for i, t in enumerate(tasks):
        for d in t.deps:
            assert s.start_s[i] >= s.end_s[d.task] - 1e-12
    for n in nodes:  # one task at a time per node
        spans = sorted((s.start_s[i], s.end_s[i]) for i in range(len(tasks)) if s.node[i] == n)
        assert all(a[1] <= b[0] + 1e-12 for a, b in itertools.pairwise(spans))


# ------------------------------------------------------------------ dynamic placement


def _route_ab(src: str, dest: str) -> Route:
    return AB if (src, dest) in (("a", "b"), ("b", "a")) else Route((), 0.0)


def test_free_workers_take_dynamic_tasks_greedily() -> None:
    nodes = {"a": NodeModel(20.0, 100.0), "b": NodeModel(10.0, 100.0)}
    tasks = [Task(None, 10 * GF, priority=i) for i in range(6)]
    s = simulate_pass(tasks, nodes, CAP, _route_ab)
    # a (twice as fast) finishes a task every 0.5 s, b every 1 s: a takes 4, b takes 2
    ran_on_a = sum(1 for i in range(6) if s.end_s[i] - s.start_s[i] == pytest.approx(0.5))
    assert ran_on_a == 4 and s.span_s == pytest.approx(2.0)


def test_a_dynamic_task_pulls_its_input_where_it_runs() -> None:
    nodes = {"a": NodeModel(10.0, 100.0), "b": NodeModel(10.0, 100.0)}
    # b is busy until 3 s; a produces at 1 s, then a's next free slot takes the consumer:
    # a runs it at once (its input is local) rather than b pulling it later
    tasks = [
        Task("a", 10 * GF),
        Task("b", 30 * GF),
        Task(None, 10 * GF, deps=(Dep(0, 5e6, None),)),
    ]
    s = simulate_pass(tasks, nodes, CAP, _route_ab)
    assert s.start_s[2] == pytest.approx(1.0) and s.transfers == ()


def test_a_dynamic_task_on_another_node_waits_for_its_pull() -> None:
    nodes = {"a": NodeModel(10.0, 100.0), "b": NodeModel(10.0, 100.0)}
    tasks = [
        Task("a", 10 * GF),
        Task("a", 30 * GF, priority=1),  # keeps a busy after the producer
        Task(None, 10 * GF, deps=(Dep(0, 5e6, None),)),
    ]
    s = simulate_pass(tasks, nodes, CAP, _route_ab)
    # b is idle and takes it at 1 s, pulls 5 MB (0.5 s) plus the RTT, then runs 1 s
    assert s.start_s[2] == pytest.approx(1.51) and s.end_s[2] == pytest.approx(2.51)


def test_an_object_is_fetched_once_per_node() -> None:
    nodes = {"a": NodeModel(10.0, 100.0), "b": NodeModel(10.0, 100.0)}
    w = Fetch("W0", 10e6, home="a")
    tasks = [
        Task("b", 1 * GF, fetch=(w,)),
        Task("b", 1 * GF, fetch=(w,)),
        Task("a", 1 * GF, fetch=(w,)),
    ]
    s = simulate_pass(tasks, nodes, CAP, _route_ab)
    fetched = [t for t in s.transfers if t[0] == -1 and t[2].route.resources]
    assert len(fetched) == 1 and s.bits[LINK] == pytest.approx(80e6)  # once, to b; a holds it
    assert s.start_s[0] == pytest.approx(1.01)  # 10 MB at 10 MB/s, plus the RTT
    assert s.start_s[2] == 0.0


def test_routes_chosen_at_run_time_need_route_of() -> None:
    with pytest.raises(SedmaError, match="give route_of"):
        simulate_pass([Task(None, 1.0)], NODES, CAP)


def test_a_dynamic_task_runs_only_where_it_is_eligible() -> None:
    nodes = {"a": NodeModel(20.0, 100.0), "b": NodeModel(10.0, 100.0)}
    tasks = [Task(None, 10 * GF, priority=i, eligible=frozenset({"b"})) for i in range(2)]
    tasks.append(Task(None, 10 * GF, priority=9))
    s = simulate_pass(tasks, nodes, CAP, _route_ab)
    assert s.node == ("b", "b", "a")
    assert s.span_s == pytest.approx(2.0)  # b runs its two in turn; a takes the third
    with pytest.raises(SedmaError, match="eligible"):
        simulate_pass([Task(None, 1.0, eligible=frozenset({"z"}))], nodes, CAP, _route_ab)


def test_passes_in_flight_fill_idle_time_like_a_pipeline() -> None:
    # a on node a, then b on node b reading it: one pass takes 2 s; passes overlap
    one = [Task("a", 10 * GF), Task("b", 10 * GF, deps=(Dep(0, 0.0),))]
    s = simulate_pass(repeat_passes(one, 4), NODES, CAP)
    assert s.span_s == pytest.approx(5.0)  # 4 passes in 5 s, not 8: b works while a works
    assert s.start_s[2] == pytest.approx(1.0)  # pass 1's first task right after pass 0's


def test_a_closed_loop_starts_each_slots_next_pass_when_its_last_ends() -> None:
    # one pass takes 2 s over two stages; with one pass in flight they cannot overlap
    one = [Task("a", 10 * GF), Task("b", 10 * GF, deps=(Dep(0, 0.0),))]
    alone = simulate_pass(repeat_passes(one, 4, in_flight=1), NODES, CAP)
    assert alone.span_s == pytest.approx(8.0)
    two = simulate_pass(repeat_passes(one, 4, in_flight=2), NODES, CAP)
    assert two.span_s == pytest.approx(5.0)  # two in flight fill the pipeline again
    assert two.start_s[4] == pytest.approx(2.0)  # pass 2 waits for pass 0's end


def test_passes_in_flight_must_be_at_least_one() -> None:
    with pytest.raises(SedmaError, match="in_flight must be >= 1"):
        repeat_passes([Task("a", 1.0)], 2, in_flight=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 2.0), st.floats(1e3, 5e7), st.integers(0, 3)),
        min_size=1,
        max_size=16,
    ),
)
def test_transfers_in_a_pass_end_when_the_fluid_model_says(
    sends: list[tuple[float, float, int]],
) -> None:
    # Each send: a producer on "a" busy for `start` seconds, then its output crosses one of
    # four routes (several sends share a route object, as a backend's cached routes do) to
    # a consumer on "b". The simulator charges transfers per route class; share_links, the
    # cost model's reference, rates every transfer alone: arrivals must agree.
    res: list[Resource] = [("wan", "x", ""), ("wan", "y", ""), ("up", "a", ""), ("down", "b", "")]
    cap = {res[0]: 8e6, res[1]: 40e6, res[2]: 100e6, res[3]: 60e6}
    routes = [
        Route((res[2], res[0], res[3]), 0.01),
        Route((res[2], res[1], res[3]), 0.02),
        Route((res[2], res[3]), 0.001),
        Route((res[0], res[1]), 0.0),
    ]
    nodes = {f"p{i}": NodeModel(rate_gflops=1.0, mem_bandwidth_gbs=1.0) for i in range(len(sends))}
    nodes["b"] = NodeModel(rate_gflops=1.0, mem_bandwidth_gbs=1.0)
    tasks = [Task(f"p{i}", start * GF) for i, (start, _, _) in enumerate(sends)]
    tasks += [
        Task("b", 0.0, deps=(Dep(i, nbytes, routes[r]),), priority=float(i))
        for i, (_, nbytes, r) in enumerate(sends)
    ]
    s = simulate_pass(tasks, nodes, cap)
    want = share_links([Transfer(t, b, routes[r]) for t, b, r in sends], cap)
    got = {c - len(sends): arrival for _, c, _, arrival in s.transfers}
    assert [got[i] for i in range(len(sends))] == pytest.approx(want, rel=1e-6, abs=1e-9)
