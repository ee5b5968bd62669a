package tags

permit contains "rego-doctor-searches" if {
	"doctor" in input.subject.roles
	input.action == "search"
}

