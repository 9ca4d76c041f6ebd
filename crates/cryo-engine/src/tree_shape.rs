//! Where each process of a restored tree is born, so that it ends up with its dumped parent and
//! session.
//!
//! The kernel lets a process get a session only at fork (its creator's) or by `setsid` (a new
//! one, its own PID), and a parent only at fork (its creator, or with CLONE_PARENT its creator's
//! parent) or when its parent exits (the nearest living ancestor that is a child subreaper).
//! A tree whose processes changed sessions and lost parents over time (CRIU's TODO row W33,
//! zdtm's session02 and session03) therefore cannot always be made by each parent forking its
//! children. The images do not hold the history that made it; this module finds one:
//!
//! - Each process is *born* in a session: a session member in its session, a session leader in
//!   any session it can be born in before it calls `setsid`. The members born in a session form
//!   a subtree below its leader (a helper at the leader's PID when the leader has exited): its
//!   *region*.
//! - A process is born below its dumped parent: forked by the parent itself when the parent is
//!   in the session then; otherwise somewhere in the region of its session, which must then lie
//!   below the parent, and moved up to the parent afterwards (*lifted*: an extra helper forks it
//!   and exits while the parent is a subreaper).
//! - So every parent of a member born in session S outside S's region must be an ancestor of
//!   S's leader. A helper leader is placed below all of them (they must be on one line); for a
//!   living leader, leaders are moved into other regions (born in another session) until the
//!   lines hold. The first guess for a leader is the session of its children that is older
//!   than itself (PIDs are handed out in order, so the older session existed at its birth);
//!   then conflicts are repaired one at a time.
//!
//! The plan is a sequence of [`Step`]s: the restore follows it with real processes, the unit
//! tests with a model of the kernel, on histories made at random.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A process of the dumped tree, as the plan needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its PID (in the tree's own pid namespace).
    pub pid: u32,
    /// Index of its parent in the tree; `None` for a root (created by cryo).
    pub parent: Option<usize>,
    /// Its session.
    pub sid: u32,
}

/// A place in the tree as it is built: a dumped process or a helper that re-makes a session
/// whose leader has exited (index into [`Shape::helpers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// Process `i` of the tree.
    Proc(usize),
    /// Session helper `h`.
    Helper(usize),
}

/// A helper at the PID of a session's exited leader: it calls `setsid`, forks what is born in
/// the session, and exits once the tree is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionHelper {
    /// The session, and the helper's PID.
    pub sid: u32,
    /// The node that forks it.
    pub under: Node,
}

/// How a process gets its dumped parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Birth {
    /// Created by cryo: a root.
    ByCryo,
    /// Forked by its parent.
    ByParent,
    /// Forked with CLONE_PARENT by a session helper that its parent forked.
    CloneParent,
    /// Forked by an extra helper that the creator forks; moved to its parent when that helper
    /// exits (after every process exists, the last born first).
    Lifted,
}

/// One step of making the tree, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create the node: a process by its creator (see [`Shape::creator`], [`Shape::birth`]),
    /// a helper by the node it is under.
    Make(Node),
    /// The node calls `setsid`.
    Setsid(Node),
    /// Everything below the node is made: nothing more is forked from it.
    Done(Node),
}

/// The plan: where each process is born.
#[derive(Debug, Clone)]
pub struct Shape {
    members: Vec<Member>,
    /// The session each process is born in (a root: the one it starts in).
    pub born: Vec<Option<u32>>,
    /// The node that creates each process (`None`: a root).
    under: Vec<Option<Node>>,
    /// The sessions whose leader has exited, re-made for the time of the restore.
    pub helpers: Vec<SessionHelper>,
}

impl Shape {
    /// The node whose task forks process `i` (directly, with CLONE_PARENT, or through a lifting
    /// helper); `None` for a root.
    pub fn creator(&self, i: usize) -> Option<Node> {
        self.under[i]
    }

    /// The dumped parent of process `i` (`None`: a root).
    pub fn parent(&self, i: usize) -> Option<usize> {
        self.members[i].parent
    }

    /// How process `i` gets its parent.
    pub fn birth(&self, i: usize) -> Birth {
        let Some(parent) = self.members[i].parent else {
            return Birth::ByCryo;
        };
        match self.under[i] {
            None => Birth::ByCryo,
            Some(Node::Proc(c)) if c == parent => Birth::ByParent,
            // A session helper is forked by the node it is under and never moves.
            Some(Node::Helper(h)) if self.helpers[h].under == Node::Proc(parent) => {
                Birth::CloneParent
            }
            Some(_) => Birth::Lifted,
        }
    }

    /// The steps that make the tree, parents before children. A session leader (a root too)
    /// forks what is born in the session it was born in before it calls `setsid`, and what is
    /// born in its own session after.
    pub fn steps(&self) -> Vec<Step> {
        let mut below: BTreeMap<Node, Vec<Node>> = BTreeMap::new();
        for (i, u) in self.under.iter().enumerate() {
            if let Some(u) = u {
                below.entry(*u).or_default().push(Node::Proc(i));
            }
        }
        for (h, s) in self.helpers.iter().enumerate() {
            below.entry(s.under).or_default().push(Node::Helper(h));
        }
        let mut steps = Vec::new();
        // Depth first, without recursion (a tree can be a long chain).
        enum Todo {
            Enter(Node),
            Step(Step),
        }
        let mut todo: Vec<Todo> = (0..self.members.len())
            .filter(|&i| self.under[i].is_none())
            .rev()
            .map(|i| Todo::Enter(Node::Proc(i)))
            .collect();
        while let Some(t) = todo.pop() {
            let node = match t {
                Todo::Step(s) => {
                    steps.push(s);
                    continue;
                }
                Todo::Enter(n) => n,
            };
            steps.push(Step::Make(node));
            let kids = below.get(&node).cloned().unwrap_or_default();
            // What comes after `setsid` (in its own session) and what before.
            let (own, before): (Vec<Node>, Vec<Node>) = match node {
                Node::Helper(_) => (kids, Vec::new()),
                Node::Proc(i) => {
                    let m = self.members[i];
                    if m.sid != m.pid {
                        (Vec::new(), kids)
                    } else {
                        kids.into_iter().partition(
                            |k| matches!(k, Node::Proc(j) if self.born[*j] == Some(m.pid)),
                        )
                    }
                }
            };
            let leads = match node {
                Node::Helper(_) => true,
                Node::Proc(i) => self.members[i].sid == self.members[i].pid,
            };
            // Pushed in reverse: popped in order.
            todo.push(Todo::Step(Step::Done(node)));
            for k in own.iter().rev() {
                todo.push(Todo::Enter(*k));
            }
            if leads {
                todo.push(Todo::Step(Step::Setsid(node)));
            }
            for k in before.iter().rev() {
                todo.push(Todo::Enter(*k));
            }
        }
        steps
    }
}

/// Why a tree could not be planned: said to the user as is.
pub type Refusal = String;

/// Plan how to make `members` (parents need not come first); a root starts in session
/// `start_sid` (cryo's, or 0 as the init of a new pid namespace).
pub fn plan(members: &[Member], start_sid: u32) -> Result<Shape, Refusal> {
    let n = members.len();
    let by_pid: HashMap<u32, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.pid, i))
        .collect();
    if by_pid.len() != n {
        return Err("the tree holds a pid twice".into());
    }
    // Every process must reach a root: parents in range and no loop (each chain is walked
    // once: 1 on the walk now, 2 known to reach a root).
    let mut state = vec![0u8; n];
    for start in 0..n {
        let mut path = Vec::new();
        let mut x = Some(start);
        while let Some(i) = x {
            match state.get(i) {
                None | Some(1) => {
                    return Err(format!("pid {} has no root above it", members[start].pid));
                }
                Some(2) => break,
                _ => {}
            }
            state[i] = 1;
            path.push(i);
            x = members[i].parent;
        }
        for i in path {
            state[i] = 2;
        }
    }
    let leads = |i: usize| members[i].sid == members[i].pid;
    for m in members {
        if let Some(&l) = by_pid.get(&m.sid) {
            if members[l].sid != m.sid {
                return Err(format!(
                    "pid {} is in session {} while process {} is in session {}",
                    m.pid, m.sid, m.sid, members[l].sid
                ));
            }
        }
    }
    // The session the roots start in, and those of roots that do not lead theirs: outside the
    // tree, nothing can be born in them but below a root.
    let outside: BTreeSet<u32> = members
        .iter()
        .enumerate()
        .filter(|&(i, m)| m.parent.is_none() && !leads(i))
        .map(|(_, m)| m.sid)
        .chain([start_sid])
        .collect();
    let mut kids = vec![Vec::new(); n];
    for (i, m) in members.iter().enumerate() {
        if let Some(p) = m.parent {
            kids[p].push(i);
        }
    }
    // First guess: a member in its session; a leader in the session of its children that is
    // older than itself, else in its parent's.
    let mut born: Vec<Option<u32>> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let Some(p) = m.parent else {
                return Some(start_sid);
            };
            if !leads(i) {
                return Some(m.sid);
            }
            let older = kids[i]
                .iter()
                .filter(|&&c| !leads(c))
                .map(|&c| members[c].sid)
                .filter(|&s| s != m.pid && s < m.pid)
                .max();
            Some(older.unwrap_or(members[p].sid))
        })
        .collect();
    // Whether `a` is a dumped ancestor of `x`.
    let dumped_ancestor = |x: usize, a: usize| {
        let mut x = members[x].parent;
        while let Some(p) = x {
            if p == a {
                return true;
            }
            x = members[p].parent;
        }
        false
    };
    let mut tried: HashSet<(usize, u32)> = HashSet::new();
    for _ in 0..20 * n + 10 {
        let c = match attempt(members, &by_pid, &born, &outside) {
            Ok(shape) => return Ok(shape),
            Err(Conflict::Final(why)) => return Err(why),
            Err(Conflict::Session(c)) => c,
        };
        let sid = c.sid;
        let leader = by_pid.get(&sid).copied();
        // Repairs: a parent outside the region (a leader) born in the session instead...
        let absorb = c.outside.iter().filter(|&&e| {
            leads(e)
                && members[e].parent.is_some()
                && born[e] != Some(sid)
                && !tried.contains(&(e, sid))
                && !leader.is_some_and(|l| dumped_ancestor(l, e))
        });
        let mut fixes: Vec<(usize, u32)> = absorb.map(|&e| (e, sid)).collect();
        // ... or the living leader born in a region below the parent it must be under.
        let mut moves = Vec::new();
        if let Some(l) = leader.filter(|&l| members[l].parent.is_some()) {
            let e = c.missing;
            if !c.is_ancestor(Node::Proc(l), Node::Proc(e)) {
                let regions = std::iter::once(e)
                    .filter(|&e| leads(e))
                    .chain((0..n).filter(|&x| {
                        leads(x) && x != l && c.is_ancestor(Node::Proc(e), Node::Proc(x))
                    }));
                for r in regions {
                    let rs = members[r].pid;
                    if born[l] != Some(rs)
                        && !c.is_ancestor(Node::Proc(l), Node::Proc(r))
                        && !dumped_ancestor(r, l)
                        && !tried.contains(&(l, rs))
                    {
                        moves.push((l, rs));
                    }
                }
            }
            // A leader younger than the parent was born after it: below it, most likely.
            if members[l].pid > members[e].pid {
                moves.append(&mut fixes);
                fixes = moves;
                moves = Vec::new();
            }
        }
        fixes.append(&mut moves);
        let Some(&(x, s)) = fixes.first() else {
            return Err(c.refusal(members));
        };
        tried.insert((x, s));
        born[x] = Some(s);
    }
    Err("no way found to make the tree's sessions".into())
}

/// Why one attempt failed.
enum Conflict {
    /// Nothing can repair it.
    Final(Refusal),
    Session(SessionConflict),
}

/// A parent (`missing`) of a member born in session `sid` outside its region is not an
/// ancestor of the session's leader; the tree as attempted, to choose a repair.
struct SessionConflict {
    sid: u32,
    missing: usize,
    outside: Vec<usize>,
    /// Creator of each process, and where each helper is (`None`: not placed yet).
    under: Vec<Option<Node>>,
    helper_sid: Vec<u32>,
    helper_under: Vec<Option<Node>>,
}

impl SessionConflict {
    fn up(&self, x: Node) -> Option<Node> {
        match x {
            Node::Proc(i) => self.under[i],
            Node::Helper(h) => self.helper_under[h],
        }
    }

    /// Whether `a` is a strict ancestor of `x` in the tree as attempted.
    fn is_ancestor(&self, a: Node, x: Node) -> bool {
        let mut x = self.up(x);
        let mut steps = 0;
        while let Some(p) = x {
            if p == a {
                return true;
            }
            steps += 1;
            if steps > self.under.len() + self.helper_sid.len() {
                return false;
            }
            x = self.up(p);
        }
        false
    }

    fn refusal(&self, members: &[Member]) -> Refusal {
        let pids: Vec<String> = self
            .outside
            .iter()
            .map(|&e| members[e].pid.to_string())
            .collect();
        format!(
            "no way found to re-make session {}: its members are children of pids {} (pid {} \
             cannot be an ancestor of the session's leader)",
            self.sid,
            pids.join(", "),
            members[self.missing].pid
        )
    }
}

/// Build the tree for the sessions chosen in `born`; place the session helpers.
fn attempt(
    members: &[Member],
    by_pid: &HashMap<u32, usize>,
    born: &[Option<u32>],
    outside: &BTreeSet<u32>,
) -> Result<Shape, Conflict> {
    let n = members.len();
    let in_region = |p: usize, s: u32| {
        members[p].pid == s
            || born[p] == Some(s)
            || (members[p].parent.is_none() && members[p].sid == s)
    };
    let mut under: Vec<Option<Node>> = vec![None; n];
    let mut helper_sid: Vec<u32> = Vec::new();
    let mut helper_of: BTreeMap<u32, usize> = BTreeMap::new();
    // Parents of members born in a session outside its region.
    let mut outside_parents: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    for (x, m) in members.iter().enumerate() {
        let (Some(p), Some(s)) = (m.parent, born[x]) else {
            continue;
        };
        if in_region(p, s) {
            under[x] = Some(Node::Proc(p));
            continue;
        }
        if outside.contains(&s) {
            return Err(Conflict::Final(format!(
                "restoring pid {} into session {s} from outside it (its parent {} is not in it)",
                m.pid, members[p].pid
            )));
        }
        outside_parents.entry(s).or_default().insert(p);
        under[x] = Some(match by_pid.get(&s) {
            Some(&l) => Node::Proc(l),
            None => {
                let h = *helper_of.entry(s).or_insert_with(|| {
                    helper_sid.push(s);
                    helper_sid.len() - 1
                });
                Node::Helper(h)
            }
        });
    }
    let root_of = |s: u32| match by_pid.get(&s) {
        Some(&l) => Node::Proc(l),
        None => Node::Helper(helper_of[&s]),
    };
    // Move helpers down until every outside parent is above its session's leader.
    let rounds = 10 * (n + helper_sid.len()) + 10;
    let mut c = SessionConflict {
        sid: 0,
        missing: 0,
        outside: Vec::new(),
        under,
        helper_under: vec![None; helper_sid.len()],
        helper_sid,
    };
    // Moving a helper below a node that is not below it never makes a loop: one check.
    if has_cycle(&c) {
        return Err(Conflict::Final(
            "no way found to make the tree's sessions (the plan loops)".into(),
        ));
    }
    for _ in 0..rounds {
        let violation = outside_parents.iter().find_map(|(&s, ps)| {
            let l = root_of(s);
            ps.iter()
                .find(|&&e| !c.is_ancestor(Node::Proc(e), l))
                .map(|&e| (s, e))
        });
        let Some((s, e)) = violation else {
            // Every helper has parents to be under: all are placed.
            let helpers = c
                .helper_sid
                .iter()
                .zip(&c.helper_under)
                .map(|(&sid, u)| u.map(|under| SessionHelper { sid, under }))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Conflict::Final("a session helper was not placed".into()))?;
            return Ok(Shape {
                members: members.to_vec(),
                born: born.to_vec(),
                under: c.under,
                helpers,
            });
        };
        // The deepest helper on the leader's line that can go below `e` goes there.
        let l = root_of(s);
        let mut line = vec![l];
        let mut x = c.up(l);
        while let Some(p) = x {
            line.push(p);
            x = c.up(p);
        }
        let movable = line.iter().find_map(|&h| match h {
            Node::Helper(hi)
                if !c.is_ancestor(h, Node::Proc(e))
                    && c.helper_under[hi].is_none_or(|u| c.is_ancestor(u, Node::Proc(e))) =>
            {
                Some(hi)
            }
            _ => None,
        });
        match movable {
            Some(hi) => {
                // Straight to the deepest of its own session's outside parents on that line,
                // rather than one step a round (a long chain of them would take as many).
                let h = Node::Helper(hi);
                let mut target = e;
                for &d in &outside_parents[&c.helper_sid[hi]] {
                    if c.is_ancestor(Node::Proc(target), Node::Proc(d))
                        && !c.is_ancestor(h, Node::Proc(d))
                    {
                        target = d;
                    }
                }
                c.helper_under[hi] = Some(Node::Proc(target));
            }
            None => {
                c.sid = s;
                c.missing = e;
                c.outside = outside_parents[&s].iter().copied().collect();
                return Err(Conflict::Session(c));
            }
        }
    }
    Err(Conflict::Final(
        "no way found to place the helpers of the tree's sessions".into(),
    ))
}

/// Whether following creators from some node comes back to it.
fn has_cycle(c: &SessionConflict) -> bool {
    let total = c.under.len() + c.helper_sid.len();
    let index = |x: Node| match x {
        Node::Proc(i) => i,
        Node::Helper(h) => c.under.len() + h,
    };
    // 0 unseen, 1 on the current path, 2 done.
    let mut state = vec![0u8; total];
    for start in 0..total {
        let mut path = Vec::new();
        let mut x = Some(if start < c.under.len() {
            Node::Proc(start)
        } else {
            Node::Helper(start - c.under.len())
        });
        while let Some(node) = x {
            match state[index(node)] {
                1 => return true,
                2 => break,
                _ => {}
            }
            state[index(node)] = 1;
            path.push(index(node));
            x = c.up(node);
        }
        for p in path {
            state[p] = 2;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of what the kernel keeps of processes: parent, session, subreaper flags.
    #[derive(Default)]
    struct Kernel {
        procs: BTreeMap<u32, Task>,
        next_pid: u32,
        /// Where orphans go when no subreaper takes them.
        init: u32,
    }

    #[derive(Clone, Copy)]
    struct Task {
        parent: u32,
        sid: u32,
        alive: bool,
        reaped: bool,
        subreaper: bool,
        /// Some ancestor was a subreaper (the kernel only looks for one then).
        has_subreaper: bool,
        exit_status: u32,
    }

    impl Kernel {
        fn add(&mut self, pid: u32, parent: u32, sid: u32) {
            assert!(
                self.procs.get(&pid).is_none_or(|t| t.reaped),
                "pid {pid} in use"
            );
            let has_subreaper = self
                .procs
                .get(&parent)
                .is_some_and(|p| p.has_subreaper || p.subreaper);
            self.procs.insert(
                pid,
                Task {
                    parent,
                    sid,
                    alive: true,
                    reaped: false,
                    subreaper: false,
                    has_subreaper,
                    exit_status: 0,
                },
            );
        }

        fn fork(&mut self, by: u32, pid: Option<u32>, clone_parent: bool) -> u32 {
            let t = self.procs[&by];
            assert!(t.alive, "{by} forks while dead");
            let pid = pid.unwrap_or_else(|| {
                while self.procs.contains_key(&self.next_pid) {
                    self.next_pid += 1;
                }
                self.next_pid
            });
            let parent = if clone_parent { t.parent } else { by };
            self.add(pid, parent, t.sid);
            pid
        }

        fn setsid(&mut self, pid: u32) {
            assert!(
                !self.procs.values().any(|t| !t.reaped && t.sid == pid),
                "setsid by {pid}: a session or group {pid} exists"
            );
            self.procs.get_mut(&pid).unwrap().sid = pid;
        }

        fn set_subreaper(&mut self, pid: u32, on: bool) {
            self.procs.get_mut(&pid).unwrap().subreaper = on;
            if on {
                let mut todo = vec![pid];
                while let Some(p) = todo.pop() {
                    for (&c, t) in self.procs.iter_mut() {
                        if t.parent == p && !t.reaped {
                            t.has_subreaper = true;
                            todo.push(c);
                        }
                    }
                }
            }
        }

        fn exit(&mut self, pid: u32, status: u32) {
            let t = self.procs.get_mut(&pid).unwrap();
            t.alive = false;
            t.exit_status = status;
            let t = *t;
            let mut reaper = self.init;
            if t.has_subreaper {
                let mut a = Some(t.parent);
                while let Some(p) = a.and_then(|a| self.procs.get(&a).map(|x| (a, *x))) {
                    if p.1.subreaper && p.1.alive {
                        reaper = p.0;
                        break;
                    }
                    a = Some(p.1.parent).filter(|&x| x != p.0);
                }
            }
            for c in self.procs.values_mut() {
                if c.parent == pid && !c.reaped {
                    c.parent = reaper;
                }
            }
        }

        fn reap(&mut self, pid: u32) {
            self.procs.get_mut(&pid).unwrap().reaped = true;
        }

        /// The tree below `root` as the images would hold it.
        fn members(&self, root: u32) -> Vec<Member> {
            let live: Vec<u32> = self
                .procs
                .iter()
                .filter(|(_, t)| !t.reaped)
                .map(|(&p, _)| p)
                .collect();
            let index: HashMap<u32, usize> =
                live.iter().enumerate().map(|(i, &p)| (p, i)).collect();
            live.iter()
                .map(|&p| Member {
                    pid: p,
                    parent: if p == root {
                        None
                    } else {
                        Some(index[&self.procs[&p].parent])
                    },
                    sid: self.procs[&p].sid,
                })
                .collect()
        }
    }

    /// Make `members` in a fresh model kernel as the restore would; returns the tree made.
    fn make(members: &[Member], shape: &Shape) -> (Vec<Member>, usize) {
        let mut k = Kernel {
            next_pid: 1_000_000,
            ..Kernel::default()
        };
        let pid_of = |n: Node| match n {
            Node::Proc(i) => members[i].pid,
            Node::Helper(h) => shape.helpers[h].sid,
        };
        let mut lifts = Vec::new();
        let mut root = 0;
        for step in shape.steps() {
            match step {
                Step::Make(Node::Proc(i)) => {
                    let pid = members[i].pid;
                    match shape.birth(i) {
                        Birth::ByCryo => {
                            k.add(pid, 0, START_SID);
                            k.init = pid;
                            root = pid;
                        }
                        Birth::ByParent => {
                            k.fork(pid_of(shape.creator(i).unwrap()), Some(pid), false);
                        }
                        Birth::CloneParent => {
                            k.fork(pid_of(shape.creator(i).unwrap()), Some(pid), true);
                        }
                        Birth::Lifted => {
                            let lh = k.fork(pid_of(shape.creator(i).unwrap()), None, false);
                            k.fork(lh, Some(pid), false);
                            lifts.push((pid, lh, members[members[i].parent.unwrap()].pid));
                        }
                    }
                }
                Step::Make(Node::Helper(h)) => {
                    k.fork(
                        pid_of(shape.helpers[h].under),
                        Some(shape.helpers[h].sid),
                        false,
                    );
                }
                Step::Setsid(n) => k.setsid(pid_of(n)),
                Step::Done(_) => {}
            }
        }
        let count = lifts.len();
        for (pid, lh, target) in lifts.into_iter().rev() {
            k.set_subreaper(target, true);
            k.exit(lh, 0);
            assert_eq!(k.procs[&pid].parent, target, "pid {pid} lifted");
            k.reap(lh);
            k.set_subreaper(target, false);
        }
        for h in &shape.helpers {
            k.exit(h.sid, 0);
            k.reap(h.sid);
        }
        (k.members(root), count)
    }

    /// The session cryo restores in, in these tests.
    const START_SID: u32 = 1;

    fn check(members: &[Member]) -> Result<usize, Refusal> {
        let shape = plan(members, START_SID)?;
        let (made, lifts) = make(members, &shape);
        let pids = |m: &[Member]| -> Vec<(u32, Option<u32>, u32)> {
            let mut v: Vec<_> = m
                .iter()
                .map(|x| (x.pid, x.parent.map(|p| m[p].pid), x.sid))
                .collect();
            v.sort();
            v
        };
        assert_eq!(pids(&made), pids(members), "the tree made differs");
        Ok(lifts)
    }

    /// (pid, parent pid, sid), the root first.
    fn tree(t: &[(u32, u32, u32)]) -> Vec<Member> {
        t.iter()
            .map(|&(pid, ppid, sid)| Member {
                pid,
                parent: t.iter().position(|x| x.0 == ppid),
                sid,
            })
            .collect()
    }

    #[test]
    fn a_tree_without_dead_sessions_is_made_by_parents() {
        // Root leads its session; 11 left it after forking 12, which stayed.
        let t = tree(&[(10, 0, 10), (11, 10, 11), (12, 11, 10), (13, 11, 11)]);
        let shape = plan(&t, START_SID).unwrap();
        assert!((1..t.len()).all(|i| shape.birth(i) == Birth::ByParent));
        assert_eq!(check(&t), Ok(0));
    }

    #[test]
    fn a_child_left_in_the_callers_session_is_forked_before_the_root_leaves_it() {
        let t = tree(&[(10, 0, 10), (11, 10, START_SID), (12, 10, 10)]);
        let shape = plan(&t, START_SID).unwrap();
        let steps = shape.steps();
        let at = |s: Step| steps.iter().position(|&x| x == s).unwrap();
        assert!(at(Step::Make(Node::Proc(1))) < at(Step::Setsid(Node::Proc(0))));
        assert!(at(Step::Make(Node::Proc(2))) > at(Step::Setsid(Node::Proc(0))));
        assert_eq!(check(&t), Ok(0));
    }

    #[test]
    fn a_dead_session_under_one_parent_is_made_with_clone_parent() {
        let t = tree(&[(10, 0, 10), (12, 10, 11), (13, 10, 11)]);
        let shape = plan(&t, START_SID).unwrap();
        assert_eq!(shape.helpers.len(), 1);
        assert_eq!(shape.birth(1), Birth::CloneParent);
        assert_eq!(check(&t), Ok(0));
    }

    #[test]
    fn zdtm_session02_is_made() {
        // Two dead sessions, each with members under two sibling parents.
        let t = tree(&[
            (5, 0, 5),
            (6, 5, 6),
            (10, 5, 10),
            (8, 6, 7),
            (15, 6, 12),
            (11, 10, 7),
            (13, 10, 12),
        ]);
        assert!(check(&t).unwrap() > 0);
    }

    #[test]
    fn a_loop_of_parents_and_a_pid_twice_are_refused() {
        let member = |pid, parent| Member {
            pid,
            parent,
            sid: 10,
        };
        let looped = [member(10, None), member(11, Some(2)), member(12, Some(1))];
        assert!(plan(&looped, START_SID).is_err());
        let twice = tree(&[(10, 0, 10), (11, 10, 10), (11, 10, 10)]);
        assert!(plan(&twice, START_SID).is_err());
    }

    #[test]
    fn a_long_chain_of_leaders_with_members_in_one_dead_session_is_made() {
        // Each leader has a child in session 100000, whose leader has exited: the helper goes
        // below the deepest leader (planned in one move, not one per leader).
        let chain = |len: u32| {
            let mut t = vec![(7, 0, 7)];
            for k in 0..len {
                let leader = 10 + 2 * k;
                let parent = if k == 0 { 7 } else { leader - 2 };
                t.push((leader, parent, leader));
                t.push((leader + 1, leader, 100_000));
            }
            tree(&t)
        };
        // Made in the model (which is slow on long chains)...
        assert!(check(&chain(60)).unwrap() > 0);
        // ... and planned when long.
        let shape = plan(&chain(3000), START_SID).unwrap();
        assert_eq!(shape.helpers.len(), 1);
    }

    #[test]
    fn a_pid_namespace_init_starts_in_no_session() {
        // The init's session is outside its namespace (0); its children made sessions there.
        let t = tree(&[(1, 0, 0), (2, 1, 2), (3, 2, 4), (5, 3, 4)]);
        let shape = plan(&t, 0).unwrap();
        assert_eq!(shape.helpers.len(), 1);
        let steps = shape.steps();
        assert!(matches!(steps.first(), Some(Step::Make(Node::Proc(0)))));
        assert!(!steps.contains(&Step::Setsid(Node::Proc(0))));
    }

    #[test]
    fn a_member_of_the_outside_session_below_a_leader_is_refused() {
        // 11 is in a session whose leader exited; its child 12 in the root's, outside the tree.
        let t = tree(&[(10, 0, 1), (11, 10, 13), (12, 11, 1)]);
        let err = plan(&t, START_SID).unwrap_err();
        assert!(err.contains("from outside"), "{err}");
    }

    /// A small random number generator (xorshift), for histories that are the same each run.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u32) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % u64::from(n)) as u32
        }
    }

    /// A history as zdtm's session03 makes them: processes fork (some with CLONE_PARENT),
    /// call setsid, become or stop being subreapers and exit, chosen at random; the root is a
    /// subreaper that reaps only the children exiting with status 2.
    fn random_history(seed: u64, count: usize) -> Vec<Member> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut k = Kernel {
            next_pid: 100,
            ..Kernel::default()
        };
        let root = 5;
        k.add(root, 0, root);
        k.init = root;
        k.set_subreaper(root, true);
        let mut pids = vec![k.fork(root, None, false)];
        let mut dead = vec![false];
        while pids.len() < count {
            let n = pids.len() as u32;
            // session03's weights: fork 10, exit 3 (reaped) and 1, subreaper 10, setsid 7.
            let mut m = rng.below(31);
            let mut op = 0;
            for (o, w) in [10, 3, 1, 10, 7].into_iter().enumerate() {
                op = o as u32;
                if m <= w {
                    break;
                }
                m -= w;
            }
            let i = match op {
                0 => {
                    let mut i = (n * 9 / 10 + rng.below(n) / 10) as usize;
                    while dead[i] {
                        i -= 1;
                    }
                    i
                }
                1..=3 if n == 1 => continue,
                1..=3 => (rng.below(n - 1) + 1) as usize,
                _ => rng.below(n) as usize,
            };
            if dead[i] {
                continue;
            }
            let pid = pids[i];
            match op {
                0 => {
                    let clone_parent = rng.below(2) == 1;
                    pids.push(k.fork(pid, None, clone_parent));
                    dead.push(false);
                }
                1 | 2 => {
                    dead[i] = true;
                    k.exit(pid, if op == 1 { 2 } else { 0 });
                }
                3 => {
                    let on = rng.below(2) == 1;
                    k.set_subreaper(pid, on);
                }
                _ => {
                    if k.procs[&pid].sid != pid {
                        k.setsid(pid);
                    }
                }
            }
            let reaped: Vec<u32> = k
                .procs
                .iter()
                .filter(|(_, t)| t.parent == root && !t.alive && !t.reaped && t.exit_status == 2)
                .map(|(&p, _)| p)
                .collect();
            for p in reaped {
                k.reap(p);
            }
        }
        k.members(root)
    }

    #[test]
    fn random_histories_are_made_again() {
        let mut refused = Vec::new();
        let mut lifted = 0;
        let seeds = 200;
        for seed in 0..seeds {
            let t = random_history(seed, 150);
            match check(&t) {
                Ok(l) => lifted += l,
                Err(why) => refused.push((seed, why)),
            }
        }
        // The search is a heuristic: a few trees may be refused, never made wrong (`check`
        // asserts that every tree made is the one dumped).
        eprintln!("{} of {seeds} refused, {lifted} lifted", refused.len());
        assert!(refused.len() <= seeds as usize / 20, "refused: {refused:?}");
        assert!(lifted > 0);
    }
}
