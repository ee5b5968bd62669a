package chaperone.support

permit contains "support-read-device" if {
	"support" in input.subject.roles
	input.resource.type == "Device"
	input.resource.organization in data.orgs.supported
}
