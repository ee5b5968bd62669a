// Package mutate measures whether a policy bundle's test suites would
// notice a broken rule: it makes mutants of the bundle's Cedar and Rego
// policies, one small change each (a dropped condition, a negated one, a
// swapped operator, a removed list element, a permit turned into a forbid,
// a dropped obligation), and runs the suites against every mutant. A mutant
// that no test fails survives; the score is the share of mutants killed.
// It is the engine behind `chaperone test --mutate`.
//
// [Cedar] and [Rego] make the mutants of one source, each a [Mutant] with
// its position and original text, applied to the source with
// [Mutant.Apply]. Cedar sources are read by a small parser of this package
// that keeps the span of every expression (cedar-go's AST records only the
// position of a policy); Rego modules are parsed by OPA, whose AST carries
// the location of every term. Mutants are made as source text, so a
// mutant is exactly what an author could have written.
//
// A comment `mutate: equivalent [OP [TEXT]] — reason` (`//` in Cedar, `#`
// in Rego) at the end of a line, or on a comment line just before it,
// marks the mutants of that line (only operator OP's when one is named,
// and only the one whose original text is TEXT when that is given) as
// equivalent: no request can tell them apart from the original. They are
// reported with the reason and not scored; with
// [Options.CheckEquivalent] they are run as well, and one a test kills is
// reported (its mark is wrong).
//
// [Run] tests every mutant of a bundle directory in process: the files are
// read once, the suites prepared once ([policytest.Prepare]), each mutant
// compiled once with [engine.LoadBundle] and the tests run on all cores,
// each stopping at the first failing test. A mutant the bundle's static
// checks refuse ([engine.StaticCheckError]) is killed without running a
// test ([StaticChecks]); one that does not compile is [Invalid].
// [WriteText] and [WriteJSON] render the [Report].
package mutate
