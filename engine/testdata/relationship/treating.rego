package treating

permit contains "rego-treating" if {
	input.action == "search"
	input.facts.treatingRelationship
}
