# Writes to the record only from a managed device.
package chaperone.device

deny contains {
	"id": "deny-write-from-unmanaged-device",
	"code": "DEVICE_UNTRUSTED",
	"message": "writes need a managed device",
} if {
	input.action in {"create", "update", "patch", "delete"}
	input.context.deviceTrust == "unmanaged"
}
