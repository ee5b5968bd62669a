package elements

// Build parses release v's table afresh, for the load benchmark.
func Build(v Version) (*Index, error) { return parse(v, loaded[v].table) }
