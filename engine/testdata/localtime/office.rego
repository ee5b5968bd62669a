package office

weekdays := {"monday", "tuesday", "wednesday", "thursday", "friday"}

permit contains "rego-office-hours" if {
	input.action == "search"
	input.context.localTime.weekday in weekdays
	input.context.localTime.hour * 60 + input.context.localTime.minute >= 570
	input.context.localTime.hour < 17
}
