# Writes to the record only from a managed device: a device trust that is
# missing or any other value (a respelt "unmanagd" included) is not managed.
package chaperone.device

deny contains {
	"id": "deny-write-from-unmanaged-device",
	"code": "DEVICE_UNTRUSTED",
	"message": "writes need a managed device",
} if {
	input.action in {"create", "update", "patch", "delete"}
	input.context.deviceTrust != "managed"
}
