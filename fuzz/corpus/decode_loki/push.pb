
S
{job="varlogs", level="warn"}2
ОсФШЂбф‘	disk full
detected_levelerror