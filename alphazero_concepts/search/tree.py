"""Search trees as flat arrays, and the compiled steps that select, expand and back up over all trees at once.

Why: a tree of Python objects costs about a hundred microseconds of interpreter time per simulation (node objects,
board copies, numpy calls on 30-element arrays). Here every node of every tree is a row of a few preallocated
arrays, and one numba call walks all trees of a step. The arithmetic is the reference search's, operation for
operation and in the same order (`mcts_reference.py`), so both searches visit the same moves.

Layout. Nodes: `nbb` (N, 9) and `ninfo` (N, 4) hold the position (see `rules.py`); `nint` (N, 11) integers
(parent, edge from the parent, depth, tree, en-passant square of the repetition key, repetitions, terminal,
expanded, first edge, edge count, batch stamp); `nflt` (N, 3) floats (terminal value, network value, visits).
Edges: one array per field, a node's edges contiguous in each (a PUCT choice reads three short runs): `emove`,
`epidx` (policy index), `echild` (child node or -1), and `eP`, `eN`, `eW`, `eQ` (from the parent's side to
move). Trees: `troot` (root node), `thist`/`threps` (the root's 8 history steps for the network input), `tdone`
(simulations so far) and `gkeys` rows (the positions before the root within its fifty-move window, for
repetitions; tree t's are rows gspan[t, 0] onward, gspan[t, 1] of them, most recent first).

Compiled code is cached on disk (numba `cache=True`: the first call in a fresh checkout compiles for ~20 s, later
processes load it in about a second). numba's cache does not follow calls into other modules: after editing
`rules.py`, also touch this file (or delete `__pycache__/tree.*.nb*`) so that these kernels are rebuilt.
"""

from __future__ import annotations

import math

import chess
import numpy as np
from numba import njit

from alphazero_concepts.chess.encoding import HISTORY_STEPS, _capturable_ep
from alphazero_concepts.search import rules
from alphazero_concepts.search.rules import BB_FIELDS, CASTLING, FULLMOVE, HALFMOVE, INFO_FIELDS, MAX_MOVES, TURN

PARENT, PEDGE, DEPTH, TREE, EPKEY, REPS, TERMINAL, EXPANDED, E0, NE, STAMP = range(11)
NODE_INTS = 11
TVAL, NNV, NTOTAL = range(3)
KEY_WORDS = HISTORY_STEPS * 8 + 2  # raw bitboards of the 8 steps, then repetitions, then the counters
GKEY_WORDS = 11  # 8 bitboards, castling, side to move, en-passant square + 1 (0: none)
C_INIT, C_BASE, FPU, VL, REP_DRAW, LPT = range(6)
NODES_USED, EDGES_USED, MAX_DEPTH = range(3)


class TreeStore:
    """The arrays of all trees of one search; grows (doubling) between steps, never during a compiled call."""

    def __init__(self, trees: int, nodes: int, edges: int) -> None:
        self.counts = np.zeros(3, dtype=np.int64)  # nodes used, edges used, deepest node
        self.nbb = np.zeros((nodes, BB_FIELDS), dtype=np.uint64)
        self.ninfo = np.zeros((nodes, INFO_FIELDS), dtype=np.int64)
        self.nint = np.zeros((nodes, NODE_INTS), dtype=np.int64)
        self.nflt = np.zeros((nodes, 3), dtype=np.float64)
        self.emove = np.zeros(edges, dtype=np.int32)
        self.epidx = np.zeros(edges, dtype=np.int32)
        self.echild = np.zeros(edges, dtype=np.int32)
        self.eP, self.eN, self.eW, self.eQ = (np.zeros(edges, dtype=np.float64) for _ in range(4))
        self.troot = np.zeros(trees, dtype=np.int64)
        self.thist = np.zeros((trees, HISTORY_STEPS, 12), dtype=np.uint64)
        self.threps = np.zeros((trees, HISTORY_STEPS), dtype=np.int8)
        self.tdone = np.zeros(trees, dtype=np.int64)
        self.gkeys = np.zeros((0, GKEY_WORDS), dtype=np.uint64)
        self.gspan = np.zeros((trees, 2), dtype=np.int64)  # first row in gkeys, rows

    def reserve(self, nodes: int, edges: int) -> None:
        """Room for `nodes` more nodes and `edges` more edges."""
        n_used, e_used = int(self.counts[NODES_USED]), int(self.counts[EDGES_USED])
        if n_used + nodes > len(self.nint):
            size = max(2 * len(self.nint), n_used + nodes)
            self.nbb, self.ninfo, self.nint, self.nflt = (_grown(a, size)
                                                          for a in (self.nbb, self.ninfo, self.nint, self.nflt))
        if e_used + edges > len(self.emove):
            size = max(2 * len(self.emove), e_used + edges)
            (self.emove, self.epidx, self.echild, self.eP, self.eN, self.eW,
             self.eQ) = (_grown(a, size) for a in self.edges)

    @property
    def nodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.nbb, self.ninfo, self.nint, self.nflt

    @property
    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.emove, self.epidx, self.echild, self.eP, self.eN, self.eW, self.eQ

    @property
    def trees(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.troot, self.thist, self.threps, self.tdone, self.gkeys, self.gspan


def _grown(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out


def history_key_rows(states: list[chess._BoardState]) -> np.ndarray:
    """Repetition-key rows (see GKEY_WORDS) of python-chess board states, as `Board._transposition_key` makes
    them: castling rights cleaned as `Board.clean_castling_rights` cleans them, the en-passant square only when a
    legal capture there exists."""
    out = np.zeros((len(states), GKEY_WORDS), dtype=np.uint64)
    for i, st in enumerate(states):
        rights = rules.clean_castling_rights(st.castling_rights, st.rooks, st.kings, st.occupied_w, st.occupied_b)
        ep = _capturable_ep(st)
        out[i] = (st.pawns, st.knights, st.bishops, st.rooks, st.queens, st.kings, st.occupied_w, st.occupied_b,
                  rights, int(st.turn), 0 if ep is None else ep + 1)
    return out


# ------------------------------------------------------------------------------------------------------------
# Compiled steps


@njit(cache=True, inline="always")
def _same_as_node(nbb: np.ndarray, ninfo: np.ndarray, nint: np.ndarray, a: int, b: int) -> bool:
    """Nodes `a` and `b` are the same position for the repetition rule (python-chess's transposition key)."""
    if nbb[a, 6] != nbb[b, 6] or nbb[a, 7] != nbb[b, 7]:  # occupancy first: almost always differs
        return False
    for k in range(BB_FIELDS):
        if nbb[a, k] != nbb[b, k]:
            return False
    return ninfo[a, TURN] == ninfo[b, TURN] and nint[a, EPKEY] == nint[b, EPKEY]


@njit(cache=True, inline="always")
def _same_as_history(nbb: np.ndarray, ninfo: np.ndarray, nint: np.ndarray, a: int, gkeys: np.ndarray,
                     row: int) -> bool:
    """Node `a` is the position of row `row` of the game before the root (see `history_key_rows`)."""
    if nbb[a, 6] != gkeys[row, 6] or nbb[a, 7] != gkeys[row, 7]:
        return False
    for k in range(8):
        if nbb[a, k] != gkeys[row, k]:
            return False
    return (nbb[a, CASTLING] == gkeys[row, 8] and ninfo[a, TURN] == np.int64(gkeys[row, 9])
            and nint[a, EPKEY] + 1 == np.int64(gkeys[row, 10]))


@njit(cache=True)
def _new_node(node: int, tree: int, parent: int, pedge: int, nbb: np.ndarray, ninfo: np.ndarray, nint: np.ndarray,
              nflt: np.ndarray, emove: np.ndarray, epidx: np.ndarray, echild: np.ndarray, eP: np.ndarray,
              eN: np.ndarray, eW: np.ndarray, eQ: np.ndarray, gkeys: np.ndarray, gspan: np.ndarray,
              counts: np.ndarray, ptable: np.ndarray, rep_draw: float, moves: np.ndarray, scratch: np.ndarray) -> None:
    """Fill node `node` (its position already in `nbb`/`ninfo`): legal moves and policy indices as new edges,
    repetitions along the tree path and then the game before the root, and the terminal value by rule."""
    bb, info = nbb[node], ninfo[node]
    n, in_check = rules.legal_moves(bb, info, moves, scratch)
    start = counts[EDGES_USED]
    counts[EDGES_USED] += n
    turn = info[TURN]
    kings = bb[rules.KINGS]
    for i in range(n):
        mv = moves[i]
        frm, to, promotion = mv & 63, (mv >> 6) & 63, (mv >> 12) & 7
        slot = promotion
        if promotion == 0 and kings & rules.BB_SQUARES[frm] and abs(frm % 8 - to % 8) > 1:
            slot = 1  # castling (the king's two-square move): its own index in formats that treat it apart
        e = start + i
        emove[e] = mv
        epidx[e] = ptable[turn, frm * 64 + to, slot]
        echild[e] = -1
        eP[e] = 0.0
        eN[e] = 0.0
        eW[e] = 0.0
        eQ[e] = 0.0
    nint[node, PARENT] = parent
    nint[node, PEDGE] = pedge
    nint[node, DEPTH] = 0 if parent < 0 else nint[parent, DEPTH] + 1
    counts[MAX_DEPTH] = max(counts[MAX_DEPTH], nint[node, DEPTH])
    nint[node, TREE] = tree
    nint[node, EPKEY] = rules.legal_ep_square(bb, info, moves, n)
    nint[node, EXPANDED] = 0
    nint[node, E0] = start
    nint[node, NE] = n
    nint[node, STAMP] = -1
    nflt[node, NNV] = 0.0
    nflt[node, NTOTAL] = 0.0
    # repetitions: earlier occurrences within the fifty-move window, in the tree and then the game
    halfmove = info[HALFMOVE]
    count, anc, steps = 0, parent, 1
    while anc >= 0 and steps <= halfmove:
        if _same_as_node(nbb, ninfo, nint, anc, node):
            count += 1
        anc = nint[anc, PARENT]
        steps += 1
    if steps <= halfmove:
        first, rows = gspan[tree, 0], gspan[tree, 1]
        for j in range(min(rows, halfmove - steps + 1)):
            if _same_as_history(nbb, ninfo, nint, node, gkeys, first + j):
                count += 1
    nint[node, REPS] = min(2, count)
    nint[node, TERMINAL] = 0
    nflt[node, TVAL] = 0.0
    if n == 0:
        nint[node, TERMINAL] = 1
        nflt[node, TVAL] = -1.0 if in_check else 0.0
    elif rules.is_insufficient_material(bb) or halfmove >= 100 or count >= rep_draw - 1:
        nint[node, TERMINAL] = 1


@njit(cache=True, nogil=True)
def init_roots(rbb: np.ndarray, rinfo: np.ndarray, root_reps: np.ndarray, nodes: tuple, edges: tuple,
               trees: tuple, counts: np.ndarray, ptable: np.ndarray, params: np.ndarray) -> None:
    """One root node per tree from its position rows; `root_reps` are the network's repetition counts of the
    roots (from their game history)."""
    nbb, ninfo, nint, nflt = nodes
    emove, epidx, echild, eP, eN, eW, eQ = edges
    troot, _, _, _, gkeys, gspan = trees
    moves = np.empty(MAX_MOVES, dtype=np.int32)
    scratch = np.empty(MAX_MOVES, dtype=np.int32)
    for t in range(len(rbb)):
        node = counts[NODES_USED]
        counts[NODES_USED] += 1
        nbb[node] = rbb[t]
        ninfo[node] = rinfo[t]
        troot[t] = node
        _new_node(node, t, -1, -1, nbb, ninfo, nint, nflt, emove, epidx, echild, eP, eN, eW, eQ, gkeys, gspan,
                  counts, ptable, params[REP_DRAW], moves, scratch)
        nint[node, REPS] = root_reps[t]


@njit(cache=True, inline="always")
def _backup(leaf: int, value: float, vl: float, fpu: float, nint: np.ndarray, nflt: np.ndarray, eN: np.ndarray,
            eW: np.ndarray, eQ: np.ndarray) -> None:
    """Add `value` (the leaf's side to move) to every edge above the leaf, its sign flipping each ply; `vl` is
    the virtual loss to take back (0 when none was applied)."""
    v = value
    node = leaf
    while nint[node, PARENT] >= 0:
        parent = nint[node, PARENT]
        e = nint[node, PEDGE]
        v = -v
        eN[e] += 1 - vl
        eW[e] += v + vl
        nflt[parent, NTOTAL] += 1 - vl
        n = eN[e]
        eQ[e] = eW[e] / n if n > 0 else nflt[parent, NNV] - fpu
        node = parent


@njit(cache=True, inline="always")
def _apply_virtual_loss(leaf: int, vl: float, nint: np.ndarray, nflt: np.ndarray, eN: np.ndarray, eW: np.ndarray,
                        eQ: np.ndarray) -> None:
    node = leaf
    while nint[node, PARENT] >= 0:
        parent = nint[node, PARENT]
        e = nint[node, PEDGE]
        eN[e] += vl
        eW[e] -= vl
        nflt[parent, NTOTAL] += vl
        eQ[e] = eW[e] / eN[e]
        node = parent


@njit(cache=True, inline="always")
def _puct_choice(node: int, c_init: float, c_base: float, nint: np.ndarray, nflt: np.ndarray, eP: np.ndarray,
                 eN: np.ndarray, eQ: np.ndarray, scores: np.ndarray) -> int:
    """argmax of Q + c(s)·√N(s)·P / (1 + N) over the node's edges (first maximum, NaN first, as `np.argmax`),
    computed in the reference's order of operations: (scale · P) / (1 + N), then + Q."""
    parent_visits = nflt[node, NTOTAL] + 1
    c = math.log((1 + parent_visits + c_base) / c_base) + c_init
    scale = c * math.sqrt(parent_visits)
    start = nint[node, E0]
    n = nint[node, NE]
    for i in range(n):
        scores[i] = eQ[start + i] + scale * eP[start + i] / (1.0 + eN[start + i])
    best, choice = scores[0], 0
    if best != best:
        return 0
    for i in range(1, n):
        score = scores[i]
        if score != score:
            return i
        if score > best:
            best, choice = score, i
    return choice


@njit(cache=True, nogil=True)
def select_leaves(live: np.ndarray, sims: int, nodes: tuple, edges: tuple, trees: tuple, counts: np.ndarray,
                  ptable: np.ndarray, params: np.ndarray, pending: np.ndarray) -> int:
    """One step of every tree in `live`: `leaves_per_tree` selections each (PUCT down to a leaf, creating the
    leaf's node). Terminal leaves are backed up at once; the others (with virtual loss when several leaves per
    tree) are written to `pending`, in order; returns how many."""
    nbb, ninfo, nint, nflt = nodes
    emove, epidx, echild, eP, eN, eW, eQ = edges
    troot, _, _, tdone, gkeys, gspan = trees
    c_init, c_base, fpu, vl, rep_draw = params[C_INIT], params[C_BASE], params[FPU], params[VL], params[REP_DRAW]
    lpt = int(params[LPT])
    moves = np.empty(MAX_MOVES, dtype=np.int32)
    scratch = np.empty(MAX_MOVES, dtype=np.int32)
    scores = np.empty(MAX_MOVES, dtype=np.float64)
    n_pending = 0
    for t in live:
        for _ in range(min(lpt, sims - tdone[t])):
            node = troot[t]
            while nint[node, EXPANDED] and not nint[node, TERMINAL]:
                e = nint[node, E0] + _puct_choice(node, c_init, c_base, nint, nflt, eP, eN, eQ, scores)
                child = echild[e]
                if child < 0:
                    child = counts[NODES_USED]
                    counts[NODES_USED] += 1
                    for k in range(BB_FIELDS):
                        nbb[child, k] = nbb[node, k]
                    for k in range(INFO_FIELDS):
                        ninfo[child, k] = ninfo[node, k]
                    rules.push(nbb[child], ninfo[child], emove[e])
                    _new_node(child, t, node, e, nbb, ninfo, nint, nflt, emove, epidx, echild, eP, eN, eW, eQ,
                              gkeys, gspan, counts, ptable, rep_draw, moves, scratch)
                    echild[e] = child
                node = child
            tdone[t] += 1
            if nint[node, TERMINAL]:
                _backup(node, nflt[node, TVAL], 0.0, fpu, nint, nflt, eN, eW, eQ)
            else:
                if lpt > 1:
                    _apply_virtual_loss(node, vl, nint, nflt, eN, eW, eQ)
                pending[n_pending] = node
                n_pending += 1
    return n_pending


@njit(cache=True, nogil=True)
def gather_leaves(pending: np.ndarray, stamp: int, nodes: tuple, edges: tuple, trees: tuple, unique: np.ndarray,
                  bitboards: np.ndarray, repetitions: np.ndarray, turn: np.ndarray, castling: np.ndarray,
                  ply: np.ndarray, halfmove: np.ndarray, keys: np.ndarray, legal_start: np.ndarray,
                  legal: np.ndarray) -> int:
    """The distinct leaves of `pending` (first occurrences, in order) into `unique`, with their network input
    (`PositionArrays` fields: this position and the 7 before it, along the tree path and then the root's game),
    an exact cache key per leaf and their legal policy indices (leaf i: legal[legal_start[i]:legal_start[i+1]]).
    Returns how many."""
    nbb, ninfo, nint, _ = nodes
    epidx = edges[1]
    _, thist, threps, _, _, _ = trees
    u = 0
    for leaf in pending:
        if nint[leaf, STAMP] != stamp:
            nint[leaf, STAMP] = stamp
            unique[u] = leaf
            u += 1
    legal_start[0] = 0
    for i in range(u):
        leaf = unique[i]
        tree = nint[leaf, TREE]
        depth = nint[leaf, DEPTH]
        node = leaf
        for s in range(HISTORY_STEPS):
            if s <= depth:
                white, black = nbb[node, rules.OCC_W], nbb[node, rules.OCC_B]
                for k in range(6):
                    bitboards[i, s, k] = nbb[node, k] & white
                    bitboards[i, s, 6 + k] = nbb[node, k] & black
                repetitions[i, s] = nint[node, REPS]
                node = nint[node, PARENT]
            else:
                for k in range(12):
                    bitboards[i, s, k] = thist[tree, s - depth, k]
                repetitions[i, s] = threps[tree, s - depth]
        white_to_move = ninfo[leaf, TURN] == 1
        rights = nbb[leaf, CASTLING]
        turn[i] = white_to_move
        castling[i, 0] = (rights >> np.uint64(7)) & np.uint64(1) == 1  # White O-O (h1)
        castling[i, 1] = rights & np.uint64(1) == 1  # White O-O-O (a1)
        castling[i, 2] = (rights >> np.uint64(63)) & np.uint64(1) == 1  # Black O-O (h8)
        castling[i, 3] = (rights >> np.uint64(56)) & np.uint64(1) == 1  # Black O-O-O (a8)
        ply[i] = 2 * (ninfo[leaf, FULLMOVE] - 1) + (0 if white_to_move else 1)
        halfmove[i] = ninfo[leaf, HALFMOVE]
        # the cache key: everything the network sees, plus the repetition key's en-passant square
        packed_reps = np.uint64(0)
        for s in range(HISTORY_STEPS):
            white_bb, black_bb = np.uint64(0), np.uint64(0)
            for k in range(6):
                keys[i, 8 * s + k] = bitboards[i, s, k] | bitboards[i, s, 6 + k]
                white_bb |= bitboards[i, s, k]
                black_bb |= bitboards[i, s, 6 + k]
            keys[i, 8 * s + 6] = white_bb
            keys[i, 8 * s + 7] = black_bb
            packed_reps |= np.uint64(repetitions[i, s]) << np.uint64(8 * s)
        keys[i, 8 * HISTORY_STEPS] = packed_reps
        counters = np.uint64(ply[i]) << np.uint64(32)
        counters |= np.uint64(halfmove[i]) << np.uint64(16)
        counters |= np.uint64(nint[leaf, EPKEY] + 1) << np.uint64(8)
        for k in range(4):
            if castling[i, k]:
                counters |= np.uint64(2) << np.uint64(k)
        keys[i, 8 * HISTORY_STEPS + 1] = counters | np.uint64(1 if white_to_move else 0)
        start, n = nint[leaf, E0], nint[leaf, NE]
        for j in range(n):
            legal[legal_start[i] + j] = epidx[start + j]
        legal_start[i + 1] = legal_start[i] + n
    return u


@njit(cache=True, nogil=True)
def finish_leaves(unique: np.ndarray, priors: np.ndarray, prior_start: np.ndarray, values: np.ndarray,
                  pending: np.ndarray, nodes: tuple, edges: tuple, params: np.ndarray) -> None:
    """Expand the distinct leaves with their evaluations (leaf i: priors[prior_start[i]:prior_start[i+1]],
    values[i]), then back up every pending leaf's network value (taking back its virtual loss)."""
    _, _, nint, nflt = nodes
    _, _, _, eP, eN, eW, eQ = edges
    fpu = params[FPU]
    vl = params[VL] if params[LPT] > 1 else 0.0
    for i in range(len(unique)):
        leaf = unique[i]
        if nint[leaf, EXPANDED]:
            continue
        value = values[i]
        start = nint[leaf, E0]
        for j in range(nint[leaf, NE]):
            e = start + j
            eP[e] = priors[prior_start[i] + j]
            eN[e] = 0.0
            eW[e] = 0.0
            eQ[e] = value - fpu
        nflt[leaf, NNV] = value
        nint[leaf, EXPANDED] = 1
    for leaf in pending:
        _backup(leaf, nflt[leaf, NNV], vl, fpu, nint, nflt, eN, eW, eQ)


@njit(cache=True)
def principal_variations(roots: np.ndarray, nodes: tuple, edges: tuple, out: np.ndarray) -> np.ndarray:
    """The most-visited line (ties: higher prior, then the first move) from each root, down to the first node
    without visits: moves into `out` rows; returns the lengths. As `common.principal_variation`."""
    _, _, nint, nflt = nodes
    emove, _, echild, eP, eN, _, _ = edges
    lengths = np.zeros(len(roots), dtype=np.int64)
    for r in range(len(roots)):
        node = roots[r]
        k = 0
        while node >= 0 and nint[node, EXPANDED] and nflt[node, NTOTAL] > 0:
            start = nint[node, E0]
            best = start
            for e in range(start + 1, start + nint[node, NE]):
                if eN[e] > eN[best] or (eN[e] == eN[best] and eP[e] > eP[best]):
                    best = e
            out[r, k] = emove[best]
            k += 1
            node = echild[best]
        lengths[r] = k
    return lengths
