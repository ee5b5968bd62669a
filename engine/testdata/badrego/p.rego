package chaperone.bad
permit contains x if {
