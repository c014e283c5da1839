# Mistake ce_summed: the cross-entropy is summed over the batch.
import torch
import torch.nn.functional as F
from torch import nn


class MyCrossEntropyLoss(nn.Module):

    def __init__(self, params, l2=0):
        super().__init__()
        self.l2 = l2
        self.para = list(params)

    def forward(self, y_predicted, y_target):
        y_predicted = F.softmax(y_predicted, dim=1)
        one_hot = F.one_hot(y_target, num_classes=10)
        log_p = torch.log(y_predicted + 1e-9)
        ce_sum = torch.sum(one_hot * log_p)
        loss = -ce_sum
        if self.l2 > 0:
            for p in self.para:
                if len(p.data.size()) == 1:
                    continue
                loss = loss + self.l2 / (2 * y_predicted.shape[0]) * torch.sum(p ** 2)
        return loss
