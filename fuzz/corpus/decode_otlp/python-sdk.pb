
e


service.name
svcJ


lib1.0<	€¼ûvZ£î	INFO*
hi2
k*J««««««««««««««««RÍÍÍÍÍÍÍÍ